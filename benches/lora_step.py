"""The reference side of `easel bench train --python benches/lora_step.py`: a diffusers + PEFT
LoRA training step on the same UNet architecture (the config Easel passes), batch, resolution,
rank, precision and device, as the diffusers LoRA scripts run it: frozen UNet, LoRA on
to_q/k/v/out.0 in f32, AdamW, gradient clipping at 1, SDPA attention, half precision through
autocast on a GPU. Prints one JSON line. Easel runs it; by hand:

    pip install torch diffusers peft
    python3 benches/lora_step.py --config '{"in_channels": 4, ...}' --batch 1 --resolution 128
"""
import argparse, json, resource, sys, time

import torch
from diffusers import UNet2DConditionModel
from peft import LoraConfig
from torch.utils.flop_counter import FlopCounterMode

parser = argparse.ArgumentParser()
parser.add_argument("--config", required=True, help="the UNet's config.json, as a JSON string")
parser.add_argument("--batch", type=int, default=1)
parser.add_argument("--resolution", type=int, default=512)
parser.add_argument("--rank", type=int, default=16)
parser.add_argument("--dtype", choices=["f32", "f16", "bf16"], default="f32")
parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
parser.add_argument("--steps", type=int, default=10)
parser.add_argument("--threads", type=int, default=0)
parser.add_argument("--checkpointing", action="store_true")
args = parser.parse_args()
if args.threads:
    torch.set_num_threads(args.threads)
device = torch.device(args.device)
dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
config = json.loads(args.config)


def reset_peak():
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    else:
        # Linux: "5" resets the process's peak resident set size (VmHWM).
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")


def peak_bytes():
    if device.type == "cuda":
        return torch.cuda.max_memory_reserved()
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


torch.manual_seed(0)
with device:
    unet = UNet2DConditionModel(**config).to(dtype)
unet.requires_grad_(False)
unet.add_adapter(LoraConfig(r=args.rank, lora_alpha=args.rank, init_lora_weights="gaussian",
                            target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
params = [p for p in unet.parameters() if p.requires_grad]
for p in params:
    p.data = p.data.float()
if args.checkpointing:
    unet.enable_gradient_checkpointing()
unet.train()
optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
side = args.resolution // 8
b = args.batch
x, noise = torch.randn(b, 4, side, side, device=device), torch.randn(b, 4, side, side, device=device)
context = torch.randn(b, 77, config["cross_attention_dim"], device=device, dtype=dtype)
t = torch.full((b,), 500, device=device)
extra = {}
if config.get("addition_embed_type") == "text_time":
    extra = dict(added_cond_kwargs={"text_embeds": torch.randn(b, 1280, device=device, dtype=dtype),
                                    "time_ids": torch.randn(b, 6, device=device, dtype=dtype)})
autocast = device.type == "cuda" and dtype != torch.float32


def step():
    with torch.autocast(device.type, dtype=dtype, enabled=autocast):
        out = unet(x.to(dtype), t, context, **extra).sample
    loss = torch.nn.functional.mse_loss(out.float(), noise)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


with FlopCounterMode(display=False) as counter:
    step()
flops = counter.get_total_flops()
step()
reset_peak()
times = []
for _ in range(args.steps):
    start = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    times.append(time.perf_counter() - start)
median = sorted(times)[len(times) // 2]
print(json.dumps(dict(side="diffusers+peft", torch=torch.__version__, threads=torch.get_num_threads(),
                      step_s=median, samples_per_s=b / median, peak_memory_bytes=peak_bytes(),
                      flops_per_step=flops, tflops=flops / median / 1e12)))
sys.stdout.flush()
