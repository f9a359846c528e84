"""diffusers + PEFT LoRA training step on the CPU, on the UNet `easel bench train --arch tiny`
times (the built-in tiny model's config), f32, rank 4 on to_q/k/v/out.0, AdamW, clipping at 1:
the reference side of a same-machine ratio. Prints one JSON line per batch size. Run by hand
for now (`easel bench train --python` is still to come, issue 12):

    pip install torch diffusers peft transformers
    python3 benches/lora_step_cpu.py 2      # threads, as many as Easel uses
"""
import json, sys, time, torch
from diffusers import UNet2DConditionModel
from peft import LoraConfig

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
TINY = dict(in_channels=4, out_channels=4, sample_size=16, block_out_channels=(32, 64),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            layers_per_block=1, attention_head_dim=2, cross_attention_dim=32, norm_num_groups=32)
for batch in (1, 4):
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**TINY)
    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian", target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
    params = [p for p in unet.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
    x, noise = torch.randn(batch, 4, 16, 16), torch.randn(batch, 4, 16, 16)
    ctx, t = torch.randn(batch, 77, 32), torch.full((batch,), 500)
    def step():
        loss = torch.nn.functional.mse_loss(unet(x, t, ctx).sample, noise)
        loss.backward(); torch.nn.utils.clip_grad_norm_(params, 1.0); opt.step(); opt.zero_grad(set_to_none=True)
    for _ in range(2): step()
    times = []
    for _ in range(20):
        t0 = time.perf_counter(); step(); times.append(time.perf_counter() - t0)
    med = sorted(times)[len(times) // 2]
    print(json.dumps(dict(side="diffusers+peft", batch=batch, step_s=round(med, 5), samples_per_s=round(batch / med, 2), threads=torch.get_num_threads())))
