"""Encode/decode speed of our Cheng2020-attn against CompressAI's, same weights, same images.

Both run on the CPU with the same thread count; bitstream sizes are reported side by side (our
payload, without the container header, codes the same symbols with the same CDFs).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from compressai.models import Cheng2020Attention

from benchmarks.common import ROOT, write_json
from ctrlic.codecs import bitstream
from ctrlic.codecs.backbones.cheng import Cheng2020Attn
from ctrlic.codecs.codec import Codec, pad_to_multiple
from ctrlic.datamodules.image_io import list_images, load_rgb8, to_tensor


def timed(fn, repeats: int):
    """Median seconds of ``repeats`` calls (after one warm-up) and the last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--N", type=int, default=32, help="channels (192 = paper size, q4-q6)")
    parser.add_argument("--images", default=str(ROOT / "data" / "demo" / "kodak4"))
    parser.add_argument("--crop", type=int, default=256, help="center crop (0 = full images)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    ours = Codec(Cheng2020Attn(N=args.N), name="cheng2020_attn")
    ours.prepare()
    theirs = Cheng2020Attention(N=args.N).eval()
    theirs.load_state_dict(ours.backbone.state_dict())
    theirs.update(force=True)
    rows = []
    for path in list_images(args.images):
        x = to_tensor(load_rgb8(path)[0])[None]
        if args.crop:
            x = x[..., : args.crop, : args.crop]
        x = pad_to_multiple(x, 64)
        enc_ours, data = timed(lambda x=x: ours.compress(x), args.repeats)
        dec_ours, _ = timed(lambda d=data: ours.decompress(d), args.repeats)
        enc_ref, out = timed(lambda x=x: theirs.compress(x), args.repeats)
        dec_ref, _ = timed(lambda o=out: theirs.decompress(o["strings"], o["shape"]), args.repeats)
        rows.append({
            "image": path.name, "shape": list(x.shape[-2:]),
            "encode_s": {"ctrlic": enc_ours, "compressai": enc_ref, "ratio": enc_ours / enc_ref},
            "decode_s": {"ctrlic": dec_ours, "compressai": dec_ref, "ratio": dec_ours / dec_ref},
            "bytes": {"ctrlic_total": len(data), "ctrlic_header": bitstream.header_size(data),
                      "ctrlic_payload": len(data) - bitstream.header_size(data),
                      "compressai_payload": sum(len(s[0]) for s in out["strings"])},
        })
    summary = {k: statistics.median(r[k]["ratio"] for r in rows) for k in ("encode_s", "decode_s")}
    same = all(r["bytes"]["ctrlic_payload"] == r["bytes"]["compressai_payload"] for r in rows)
    line = (f"Cheng2020-attn N={args.N} time ours/CompressAI: encode {summary['encode_s']:.2f}, decode "
            f"{summary['decode_s']:.2f} [target ≤ 1.0]; payloads {'identical' if same else 'DIFFER'}")
    path = write_json(f"codec_speed_cheng_N{args.N}", {"N": args.N, "threads": torch.get_num_threads(),
                                                       "median_time_ratio_ours_over_compressai": summary,
                                                       "images": rows, "markdown": line})
    print(f"results: {path}")
    return path


if __name__ == "__main__":
    main()
