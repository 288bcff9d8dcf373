"""Build-and-load time of PyTorch-published weights against a build with weights=None (issue "weights published for
PyTorch").

    python benchmarks/pytorch_weights.py [--model resnet50] [--repeats 3]

torchvision writes the state dict of its own model (random weights, as the published file is laid out) as `.pth`
and `.safetensors`; then, interleaved, kerasnets builds the model with weights=None (variant="torchvision": the same
architecture), from the `.safetensors` file and from the `.pth` file. Median seconds of `repeats`, each in the same
process after one warm-up build. Needs torch and torchvision (the test extras).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import kerasnets  # noqa: E402  (before TensorFlow: it picks the CPU kernels)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet50", help="a torchvision model kerasnets has a table for")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import torch
    from safetensors.torch import save_file

    from torch_reference import reference_model

    with tempfile.TemporaryDirectory() as tmp:
        state = reference_model("torchvision", args.model).state_dict()
        pth, safetensors = os.path.join(tmp, "w.pth"), os.path.join(tmp, "w.safetensors")
        torch.save(state, pth)
        save_file({k: v.contiguous() for k, v in state.items()}, safetensors)
        extra = {"variant": "torchvision"} if args.model.startswith("resnet") else {}
        runs = {"weights=None": lambda: kerasnets.create_model(args.model, **extra),
                ".safetensors": lambda: kerasnets.create_model(args.model, weights=safetensors),
                ".pth": lambda: kerasnets.create_model(args.model, weights=pth)}
        times = {name: [] for name in runs}
        for build in runs.values():
            build()  # warm-up: imports, first traces
        for _ in range(args.repeats):
            for name, build in runs.items():
                start = time.perf_counter()
                build()
                times[name].append(time.perf_counter() - start)
    base = statistics.median(times["weights=None"])
    print(f"| {args.model} | seconds (median of {args.repeats}) | x weights=None |")
    print("|---|---:|---:|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.2f} | {statistics.median(values) / base:.2f} |")


if __name__ == "__main__":
    main()
