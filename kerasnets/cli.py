"""The `kerasnets` command line (also `python -m kerasnets`)."""

import argparse
import os
import sys


def _build(args):
    from kerasnets import registry

    config = registry.get_config(args.model)
    kwargs = {"weights": None}
    if args.input_size is not None:
        kwargs["input_shape"] = (args.input_size, args.input_size, 3)
    return config.builder(**kwargs)


def cmd_summary(args):
    from kerasnets import analysis

    rows = analysis.summarize(_build(args))
    print(analysis.to_json(rows) if args.json else analysis.format_table(rows))


def cmd_list(args):
    from kerasnets import registry

    names = registry.list_models(args.pattern)
    if not names:
        raise ValueError(f"no registered model matches pattern {args.pattern!r}; known: {registry.list_models()}")
    width = max(len(n) for n in names)
    print(f"{'model':<{width}}  input  classes  weights")
    for name in names:
        config = registry.get_config(name)
        print(f"{name:<{width}}  {config.default_size:>5}  {config.classes:>7}  {','.join(config.weights) or '-'}")


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def make_parser():
    parser = argparse.ArgumentParser(prog="kerasnets", description="Classic CNNs for Keras 3 with TF-slim endpoints.")
    sub = parser.add_subparsers(dest="command", required=True)

    summary = sub.add_parser("summary", help="per-endpoint output shape and parameters of a registered model")
    summary.add_argument("model", help="registry name, e.g. inception_v3 (see `kerasnets list`)")
    summary.add_argument("--input-size", type=_positive_int, default=None, help="square input size (default: the model's)")
    summary.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    summary.set_defaults(func=cmd_summary)

    listing = sub.add_parser("list", help="registered models")
    listing.add_argument("pattern", nargs="?", default=None, help="fnmatch pattern, e.g. 'resnet*'")
    listing.set_defaults(func=cmd_list)
    return parser


def main(argv=None):
    args = make_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        args.func(args)
    except (ValueError, TypeError, OSError) as e:
        print(f"kerasnets: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
