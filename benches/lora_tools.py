"""The reference side of `easel bench lora --python benches/lora_tools.py`: merging and resizing
LoRA files the way kohya's sd-scripts do it (merge_lora.py --concat, svd_merge_lora.py,
resize_lora.py): per module the dense update ΔW = Σ weight·(alpha/rank)·up@down in float32, then
torch.linalg.svd and truncation. (kohya asks for full matrices; this uses the thin SVD, which is
faster, so the reference is if anything flattered.) Prints one JSON line. Easel runs it; by hand:

    pip install torch safetensors
    python3 benches/lora_tools.py merge_svd --rank 32 a.safetensors b.safetensors
"""
import argparse, json, resource, time

import torch
from safetensors.torch import load_file

parser = argparse.ArgumentParser()
parser.add_argument("operation", choices=["merge_concat", "merge_svd", "resize", "resize_sv_fro"])
parser.add_argument("files", nargs="+")
parser.add_argument("--rank", default="32", help="a rank, or sv_fro=T")
args = parser.parse_args()
weights = [1.0, 0.5]


def modules(path):
    tensors = load_file(path)
    found = {}
    for key, down in tensors.items():
        if key.endswith(".lora_down.weight"):
            name = key[: -len(".lora_down.weight")]
            up = tensors[name + ".lora_up.weight"]
            alpha = float(tensors.get(name + ".alpha", torch.tensor(down.shape[0])))
            found[name] = (down.float(), up.float(), alpha / down.shape[0])
    return found


def rss():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) * 1024


def rank_of(singular):
    if args.rank.startswith("sv_fro="):
        goal = float(args.rank.split("=")[1])
        energy = torch.cumsum(singular**2, 0) / torch.sum(singular**2)
        # The smallest rank meeting the goal, plus the one more kohya's resize keeps.
        return int(torch.searchsorted(energy, goal**2).item()) + 2
    return int(args.rank)


inputs = [modules(path) for path in args.files]
before = rss()
started = time.perf_counter()
merged = {}
errors = []
for name in sorted(set().union(*inputs)):
    parts = [(m[name], w) for m, w in zip(inputs, weights) if name in m]
    if args.operation == "merge_concat":
        down = torch.cat([d for (d, _, _), _ in parts], 0)
        up = torch.cat([u * s * w for (_, u, s), w in parts], 1)
        merged[name] = (down, up)
        continue
    delta = sum(w * s * (u @ d) for (d, u, s), w in parts)
    U, S, Vh = torch.linalg.svd(delta, full_matrices=False)
    r = min(rank_of(S), S.shape[0])
    merged[name] = (Vh[:r], U[:, :r] * S[:r])
    errors.append((torch.sum(S[r:] ** 2).item(), torch.sum(S**2).item()))
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
overall = (sum(e for e, _ in errors) / max(sum(n for _, n in errors), 1e-30)) ** 0.5 if errors else None
print(json.dumps({
    "bench": "lora", "operation": args.operation, "rank": args.rank, "modules": len(merged),
    "side": "torch (kohya's method)", "seconds": seconds, "peak_added_bytes": max(peak - before, 0),
    "threads": torch.get_num_threads(), "torch": torch.__version__, "overall_error": overall,
}))
