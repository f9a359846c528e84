"""transformers' BLIP captioning, for `easel bench caption --python benches/caption.py`:
the same model folder and images as Easel's side, greedy, every caption
forced to exactly --max-tokens new tokens (min_new_tokens = max_new_tokens),
so both sides do the same work. Prints one JSON line.

    pip install torch transformers pillow
"""

import argparse
import json
import time
from pathlib import Path

import torch
from PIL import Image
from transformers import BlipForConditionalGeneration, BlipProcessor


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--images", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--max-tokens", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = torch.float32 if args.device == "cpu" else torch.bfloat16
    processor = BlipProcessor.from_pretrained(args.model)
    model = BlipForConditionalGeneration.from_pretrained(args.model, dtype=dtype).to(device).eval()
    images = [Image.open(Path(args.images) / f"image-{i}.png").convert("RGB") for i in range(args.count)]

    def caption(batch, tokens):
        inputs = processor(images=batch, return_tensors="pt").to(device, dtype)
        ids = model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens)
        return processor.batch_decode(ids, skip_special_tokens=True)

    with torch.inference_mode():
        caption(images[:1], 2)  # warm-up, as Easel's side does
        started = time.perf_counter()
        captions = []
        for start in range(0, len(images), args.batch):
            captions += caption(images[start : start + args.batch], args.max_tokens)
        seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "side": "transformers",
                "images": len(images),
                "batch": args.batch,
                "threads": args.threads,
                "seconds": seconds,
                "images_per_s": len(images) / seconds,
                "tokens": len(images) * args.max_tokens,
                "captions": captions,
            }
        )
    )


if __name__ == "__main__":
    main()
