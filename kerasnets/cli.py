"""The `kerasnets` command line (also `python -m kerasnets`)."""

import argparse
import os
import sys


def _build(args):
    from kerasnets import registry

    if args.model.endswith(".keras"):  # e.g. a training run's model.keras
        if args.input_size is not None:
            raise ValueError(f"--input-size applies to registry names; MODEL {args.model!r} has its own input size")
        if getattr(args, "backbone", None) is not None:
            raise ValueError(f"--backbone applies to registry names of segmentation heads; MODEL {args.model!r} "
                             "has its own backbone")
        if getattr(args, "variant", None) is not None:
            raise ValueError(f"--variant applies to registry names; MODEL {args.model!r} has its own architecture")
        if not os.path.exists(args.model):
            raise FileNotFoundError(f"MODEL {args.model!r}: no such .keras file")
        from kerasnets.model import load_model

        return load_model(args.model)
    config = registry.get_config(args.model)
    backbone = getattr(args, "backbone", None)
    if backbone is not None and config.task != "segmentation":
        heads = ", ".join(registry.list_models(task="segmentation"))
        raise ValueError(f"--backbone applies to segmentation heads ({heads}); {args.model!r} is a classifier")
    size = config.default_size if args.input_size is None else args.input_size
    kwargs = {"weights": None, "input_shape": (size, size, 3)}
    if backbone is not None:
        kwargs["backbone"] = registry.get_config(backbone).name
    variant = getattr(args, "variant", None)
    if variant is not None:
        import inspect

        if "variant" not in inspect.signature(config.builder).parameters:
            raise ValueError(f"--variant applies to models built in more than one architecture (inception_v1, "
                             f"inception_v3, the ResNets); {args.model!r} has one")
        kwargs["variant"] = variant
    return config.builder(**kwargs)


def cmd_summary(args):
    from kerasnets import analysis

    if args.plot:
        analysis.check_plot_dependencies()
    model = _build(args)
    rows = analysis.summarize(model)
    if not args.json:
        print(f"model {model.name}")  # the architecture built, e.g. ResNet50_v1_5 for torchvision's
    print(analysis.to_json(rows) if args.json else analysis.format_table(rows))
    if args.plot:
        analysis.plot(model, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)


def cmd_list(args):
    from kerasnets import registry

    names = registry.list_models(args.pattern)
    if not names:
        raise ValueError(f"no registered model matches pattern {args.pattern!r}; known: {registry.list_models()}")
    width = max(len(n) for n in names)
    print(f"{'model':<{width}}  input  classes  {'params':>11}  {'MACs':>14}  weights (top-1 %)")
    for name in names:  # registry data only: nothing is built
        config = registry.get_config(name)
        weights = ", ".join(f"{w.tag} ({w.top1})" if w.top1 else w.tag for w in config.weights) or "-"
        if config.task == "segmentation":
            weights = f"segmentation head on {config.backbone} (--backbone: any classifier)"
        print(f"{name:<{width}}  {config.default_size:>5}  {config.classes:>7}  {config.params:>11,}  "
              f"{config.macs:>14,}  {weights}")


def cmd_train(args):
    from kerasnets import training

    training.train(args.model, args.data, backbone=args.backbone, image_size=args.image_size, epochs=args.epochs,
                   batch_size=args.batch_size, weights=args.weights, freeze_backbone=args.freeze_backbone,
                   fine_tune_from=args.fine_tune_from, recipe=args.recipe, optimizer=args.optimizer, lr=args.lr,
                   label_smoothing=args.label_smoothing, weight_decay=args.weight_decay,
                   warmup_epochs=args.warmup_epochs,
                   mixed_precision=args.mixed_precision, distribute=args.distribute, output=args.output,
                   resume=args.resume, overwrite=args.overwrite, min_crop_area=args.min_crop_area,
                   flip=args.flip, color_jitter=args.color_jitter, seed=args.seed,
                   verbose=args.verbose, model_args=dict(args.model_arg))


def cmd_export(args):
    from kerasnets import export

    export.export(args.model, format=args.format, quantize=args.quantize, data=args.data, weights=args.weights,
                  output=args.output, overwrite=args.overwrite, verify=not args.no_verify,
                  model_args=dict(args.model_arg))


def cmd_predict(args):
    from kerasnets import export

    if args.output is not None:  # a segmenter: masks and overlays
        for path, mask, overlay, fractions in export.segment(args.artifact, args.images, args.output, args.overwrite,
                                                             args.precision):
            shares = ", ".join(f"{label} {share:.1%}" for label, share in sorted(fractions.items(),
                                                                                 key=lambda item: -item[1]))
            print(f"{path}: {mask}, {overlay} ({shares})")
        return
    for path, top in zip(args.images, export.predict(args.artifact, args.images, args.top_k, args.precision)):
        print(f"{path}: " + ", ".join(f"{label} {score:.4f}" for label, score in top))


def _model_arg(text):
    """KEY=VALUE with VALUE a Python literal (True, 0.5, 'x') or else a plain string."""
    import ast

    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. batch_norm=True), got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the usage stays in --help)."""

    def error(self, message):
        self.exit(2, f"kerasnets: error: {self.prog}: {message}\n")


def make_parser():
    # Only modules that import no TensorFlow: --help and argument errors answer at once.
    from kerasnets import options, precision, recipes

    parser = _Parser(prog="kerasnets", description="Classic CNNs for Keras 3 with TF-slim endpoints.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    summary = sub.add_parser("summary", help="per-endpoint output shape, parameters, MACs and receptive field")
    summary.add_argument("model", help="registry name, e.g. inception_v3 (see `kerasnets list`), or a .keras file")
    summary.add_argument("--input-size", type=_positive_int, default=None, help="square input size (default: the model's)")
    summary.add_argument("--backbone", default=None,
                         help="a segmentation head's backbone, a registry name (default: the head's own)")
    summary.add_argument("--variant", default=None,
                         help="the architecture, for models built in more than one: 'torchvision' (as torchvision's "
                              "weights need) or the family's own ('keras' for the ResNets, 'slim' for Inception)")
    summary.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    summary.add_argument("--plot", metavar="FILE.png", help="draw the model (keras.utils.plot_model)")
    summary.set_defaults(func=cmd_summary)

    train = sub.add_parser("train", help="train or fine-tune a model on tfds or an image folder (model.fit)")
    train.add_argument("model", help="registry name (see `kerasnets list`), a segmentation head (fcn8s, fcn16s, "
                                     "fcn32s, unet, deeplab_v3) or a .keras file")
    train.add_argument("--backbone", default=None,
                       help="a segmentation head's backbone, a registry name (default: the head's, e.g. resnet18 for "
                            "unet); --weights are then the backbone's")
    train.add_argument("--model-arg", type=_model_arg, action="append", default=[], metavar="KEY=VALUE",
                       help="builder argument, repeatable (e.g. batch_norm=True, depth_multiplier=0.5)")
    train.add_argument("--data", required=True, help="tfds:NAME[:SPLIT], ROOT/{train,test}/<label>/ or ROOT/<label>/; "
                                                     "segmentation: ROOT/{train,test}/images/ and .../masks/")
    train.add_argument("--image-size", type=_positive_int, default=None, help="default: the model's input size")
    train.add_argument("--epochs", type=_positive_int, default=10)
    train.add_argument("--batch-size", type=_positive_int, default=32, help="global batch size (all replicas)")
    train.add_argument("--weights", default=None, help="imagenet or a weights file, for transfer learning")
    tuning = train.add_mutually_exclusive_group()
    tuning.add_argument("--freeze-backbone", action="store_true", help="train only the new head")
    tuning.add_argument("--fine-tune-from", metavar="ENDPOINT", help="train from this endpoint on (e.g. Mixed_6e)")
    train.add_argument("--recipe", choices=recipes.CHOICES, default="auto",
                       help="training recipe (auto: train-head with --freeze-backbone, fine-tune when starting from "
                            "weights, else scratch; "
                            "slim-imagenet: TF-slim's RMSProp recipe); the options below override its fields")
    train.add_argument("--optimizer", choices=recipes.OPTIMIZERS, default=None)
    train.add_argument("--lr", type=float, default=None, help="peak learning rate")
    train.add_argument("--warmup-epochs", type=float, default=None, help="linear warm-up (capped at a tenth of the run)")
    train.add_argument("--label-smoothing", type=float, default=None)
    train.add_argument("--weight-decay", type=float, default=None, help="decoupled weight decay")
    train.add_argument("--mixed-precision", choices=precision.CHOICES, default="auto",
                       help="auto: float16 on NVIDIA GPUs (compute capability >= 7.0), bfloat16 on CPUs with "
                            "AVX512_BF16/AMX-BF16, else off (float32)")
    train.add_argument("--distribute", choices=options.DISTRIBUTIONS, default="auto")
    train.add_argument("--output", default=None, help="run directory (default runs/<model>)")
    train.add_argument("--resume", action="store_true", help="continue a run from its last completed epoch")
    train.add_argument("--overwrite", action="store_true", help="replace an earlier run in --output")
    train.add_argument("--min-crop-area", type=float, default=None,
                       help="random resized crops' smallest area, as a fraction of the image (recipe's by default)")
    train.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                       help="random horizontal flips (recipe's by default: off, except slim-imagenet)")
    train.add_argument("--color-jitter", action="store_true", help="random brightness/saturation/contrast")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1, help="Keras progress: 0 none, 1 bar, 2 line")
    train.set_defaults(func=cmd_train)

    exporting = sub.add_parser("export", help="SavedModel or TFLite, verified against the Keras model")
    exporting.add_argument("model", help="a .keras file (e.g. a training run's model.keras) or a registry name")
    exporting.add_argument("--format", choices=options.EXPORT_FORMATS, default="saved_model")
    exporting.add_argument("--quantize", choices=options.QUANTIZATIONS, default="none", help="TFLite only")
    exporting.add_argument("--data", default=None, help="images for int8 calibration and for verification")
    exporting.add_argument("--weights", default=None, help="with a registry name: imagenet or a weights file")
    exporting.add_argument("--model-arg", type=_model_arg, action="append", default=[], metavar="KEY=VALUE")
    exporting.add_argument("--output", default=None, help="default: saved_models/<model>/...")
    exporting.add_argument("--overwrite", action="store_true", help="replace an existing output")
    exporting.add_argument("--no-verify", action="store_true", help="skip running the artifact against Keras")
    exporting.set_defaults(func=cmd_export)

    predicting = sub.add_parser("predict", help="top-k labels for images (a segmenter: masks, with --output), from a "
                                                ".keras, SavedModel or .tflite")
    predicting.add_argument("artifact")
    predicting.add_argument("images", nargs="+", metavar="IMAGE")
    predicting.add_argument("--top-k", type=_positive_int, default=5)
    predicting.add_argument("--precision", choices=precision.CHOICES, default="off",
                            help="compute precision of a .keras model (bfloat16: faster on CPUs with AVX512_BF16)")
    predicting.add_argument("--output", default=None, metavar="DIR",
                            help="segmenters: write NAME_mask.png (class per pixel) and NAME_overlay.png here")
    predicting.add_argument("--overwrite", action="store_true", help="replace masks and overlays already in --output")
    predicting.set_defaults(func=cmd_predict)

    listing = sub.add_parser("list", help="registered models")
    listing.add_argument("pattern", nargs="?", default=None, help="fnmatch pattern, e.g. 'resnet*'")
    listing.set_defaults(func=cmd_list)
    return parser


def quiet_tensorflow():
    """Imports TensorFlow without its start-up log lines, unless TF_CPP_MIN_LOG_LEVEL=0 asks for them.

    TensorFlow 2.21 logs through absl before absl is initialised, and those lines
    (oneDNN, CUDA stubs, a failed cuInit on machines without a GPU) ignore
    TF_CPP_MIN_LOG_LEVEL, so stderr goes to a temporary file while TensorFlow
    loads and finds its devices; the file is shown if that fails. After that,
    TensorFlow's C++ errors show as usual, and its Python loggers (tf, absl)
    only errors.
    """
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0" or "tensorflow" in sys.modules:
        return
    import tempfile

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile("w+") as held:
        try:
            os.dup2(held.fileno(), 2)
            import tensorflow as tf

            tf.config.list_physical_devices()
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read())
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
    tf.get_logger().setLevel("ERROR")


def main(argv=None):
    args = make_parser().parse_args(argv)
    quiet_tensorflow()
    try:
        args.func(args)
    except (ValueError, TypeError, OSError, ArithmeticError) as e:  # ArithmeticError: training.TrainingDiverged
        print(f"kerasnets: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
