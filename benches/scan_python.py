"""The usual Python pipeline for the same job as `easel bench scan`, on the
same files: PIL decode, OpenCV Laplacian variance, imagehash pHash.
Usage: python3 benches/scan_python.py target/bench-scan
Needs: pip install pillow opencv-python-headless imagehash numpy"""
import glob, json, sys, time

import cv2
import imagehash
import numpy as np
from PIL import Image

files = sorted(glob.glob(f"{sys.argv[1]}/*.jpg"))
start = time.perf_counter()
for path in files:
    image = Image.open(path).convert("RGB")
    gray = cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2GRAY)
    sharpness = cv2.Laplacian(cv2.resize(gray, (256, 256)), cv2.CV_64F).var()
    phash = imagehash.phash(image)
seconds = time.perf_counter() - start
print(json.dumps({"images": len(files), "seconds": seconds, "images_per_s": len(files) / seconds}))
