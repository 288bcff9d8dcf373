"""Export to SavedModel and TFLite, verified against the Keras model.

Exported models take raw RGB pixels, as a camera gives them: float32 in
[0, 255] (uint8 in and out for full-integer int8); the model's own
normalisation is inside. Beside each artifact go `labels.txt` and a JSON
card (source, input, labels, quantization, verification figures); neither is
replaced without `overwrite`, and `predict` reads an artifact's labels from
its own card. An export counts
only once the artifact has been run -- `tf.saved_model.load` or LiteRT's
interpreter -- on a sample batch and agrees with the Keras model: max
absolute difference of the probabilities for float formats, top-1
agreement for quantized ones.
"""

import datetime
import json
import os
import shutil

import keras
import numpy as np
import tensorflow as tf

from kerasnets import __version__
from kerasnets import data as data_lib
from kerasnets import graph
from kerasnets import layers as kn_layers
from kerasnets import precision as precision_lib
from kerasnets import registry
from kerasnets import tflite_metadata
from kerasnets.output import atomic_write, say
from kerasnets.model import load_model as load_model_file
from kerasnets.options import EXPORT_FORMATS as FORMATS, QUANTIZATIONS

# Verification tolerances: max |probability difference| for float formats, top-1 agreement otherwise.
MAX_ABS_DIFF = {("saved_model", "none"): 1e-5, ("tflite", "none"): 1e-4, ("tflite", "float16"): 1e-2}
MIN_TOP1_AGREEMENT = {("tflite", "dynamic"): 0.9, ("tflite", "int8"): 0.8}
# Segmenters: each pixel is an example (its class scores a row), and quantized ones must agree on more pixels.
MIN_PIXEL_AGREEMENT = {("tflite", "dynamic"): 0.95, ("tflite", "int8"): 0.95}
# Classes whose Keras probabilities are closer than one step of an 8-bit probability are a tie that a quantized
# model may order either way: answering either one agrees. (A barely trained model has many such ties; counting
# them as disagreements failed sound int8 exports of a 4-epoch NIN at 0.61-0.75 top-1 agreement.)
TIE = 1 / 256
BYTES_SIGNATURE = "serving_bytes"


def load_model(model, weights=None, model_args=None):
    """A Keras model taking raw pixels, its name and its labels (or None): a .keras file's from its labels.txt or
    card, a registry model's from its published weights (ImageNet's classes)."""
    if isinstance(model, keras.Model):
        return model, model.name, None
    if not isinstance(model, str):
        raise TypeError(f"MODEL must be a .keras file, a registry name or a keras.Model, got {model!r}")
    if model.endswith(".keras"):
        if not os.path.exists(model):
            raise FileNotFoundError(f"MODEL {model!r}: no such .keras file")
        name = os.path.basename(os.path.dirname(os.path.abspath(model))) if os.path.basename(model) == "model.keras" \
            else os.path.basename(model).removesuffix(".keras")
        return load_model_file(model), name, artifact_labels(model)
    config = registry.get_config(model)
    size = config.default_size
    inputs, x = kn_layers.raw_pixel_input(size, config.preprocessing_for(weights))
    net = config.builder(weights=weights, input_tensor=x, **(model_args or {}))
    published = config.pretrained(weights) if isinstance(weights, str) and weights in config.weight_tags else None
    # Published weights with their classifier: apps answer with ImageNet's names.
    with_classifier = published is not None and (model_args or {}).get("include_top", True)
    labels = published.class_names(net.output_shape[-1]) if with_classifier else None
    return net, model, labels


def is_segmenter(model):
    """Whether `model` scores every pixel (output batch x height x width x classes) rather than the image."""
    return len(model.output_shape) == 4


def prepare_image(image, size, segmenter):
    """A decoded image as the model takes it: a classifier's central crop, a segmenter's whole image, resized."""
    if segmenter:
        return tf.image.resize(tf.cast(image, tf.float32), (size, size))
    return data_lib.eval_transform(image, size)


def sample_images(model, data, count=32, seed=0):
    """Evaluation images (raw pixels) from `data`, or synthetic ones when there is none."""
    size = model.input_shape[1]
    if data is not None and is_segmenter(model):
        found = data_lib.load_segmentation(data, size, count)
        images, masks = zip(*[(x.numpy(), y.numpy()) for x, y in found.eval])
        return np.clip(np.concatenate(images), 0, 255), np.concatenate(masks)
    if data is None:
        rng = np.random.default_rng(seed)
        smooth = tf.image.resize(rng.uniform(0, 255, (count, 4, 4, 3)).astype("float32"), (size, size)).numpy()
        noise = rng.normal(0, 8, (count, size, size, 3)).astype("float32")
        return np.clip(smooth + noise, 0, 255), None
    found = data_lib.load(data, size, count)
    images, labels = [], []
    for batch_images, batch_labels in found.eval:
        images.append(batch_images.numpy())
        labels.append(batch_labels.numpy())
    return np.clip(np.concatenate(images), 0, 255), np.concatenate(labels)


def representative_images(model, data, count=200):
    load = data_lib.load_segmentation if is_segmenter(model) else data_lib.load
    found = load(data, model.input_shape[1], 1)
    return found.train.take(count)


def _on_pixels(model):
    """`model`'s forward pass on float pixels, as the exported graph runs it.

    A per-channel normalisation (a `Rescaling` by three scales and offsets:
    "torch" and "rgb_mean" preprocessing) runs on rows of width x 3 values,
    its constants tiled along them, then the rest of the model: the same
    products and sums. LiteRT's XNNPACK applies a 3-value constant one pixel
    at a time, 5-7x slower at 224x224 (0.6 ms in int8 on a 2-core AMD EPYC,
    half of ShuffleNet v2 x0.5's whole int8 time).
    """
    plain = lambda images: model(images, training=False)  # noqa: E731
    layer = next((layer for layer in model.layers if layer.name == kn_layers.PREPROCESS_NAME), None)
    if not isinstance(layer, keras.layers.Rescaling) or layer.compute_dtype != "float32" or len(model.inputs) != 1:
        return plain
    source = model.layers[0]
    if graph.parents(layer) != [source] or graph.children(source, {op.name: op for op in model.operations}) != [layer]:
        return plain  # the normalisation is not the one reader of the input
    height, width = model.input_shape[1:3]
    scale, offset = (np.asarray(v, np.float32).reshape(-1) for v in (layer.scale, layer.offset))
    if None in (height, width) or max(scale.size, offset.size) != 3 or {scale.size, offset.size} - {1, 3}:
        return plain  # nothing to tile: one scale and one offset for every channel
    scale, offset = (np.tile(np.broadcast_to(v, (3,)), width) for v in (scale, offset))
    after = graph.model_after(model, layer, name=f"{model.name}_after_preprocessing")

    def call(images):  # static shapes: a shape computed at run time would split LiteRT's XNNPACK graph
        rows = tf.reshape(images, [-1, height, width * 3]) * scale + offset
        return after(tf.reshape(rows, [-1, height, width, 3]), training=False)

    return call


def _write_saved_model(model, path, pixels=tf.float32):
    """A SavedModel of `model` whose serving signature takes `pixels` (float32, or uint8 cast to float inside)."""
    size = model.input_shape[1:3]
    forward = _on_pixels(model)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default",
                         lambda images: {"probabilities": forward(tf.cast(images, tf.float32))},
                         input_signature=[tf.TensorSpec((None, *size, 3), pixels, name="images")])

    def from_bytes(image_bytes):
        def decode(contents):
            return prepare_image(tf.io.decode_image(contents, channels=3, expand_animations=False), size[0],
                                 is_segmenter(model))

        images = tf.map_fn(decode, image_bytes, fn_output_signature=tf.TensorSpec((*size, 3), tf.float32))
        return {"probabilities": model(images, training=False)}

    archive.add_endpoint(BYTES_SIGNATURE, from_bytes,
                         input_signature=[tf.TensorSpec((None,), tf.string, name="image_bytes")])
    archive.write_out(path, verbose=False)


def _tflite_bytes(saved_model_dir, quantize, representative=None):
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=["serving_default"])
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        def dataset():
            # A black and a white image first, so the calibrated ranges cover every pixel value.
            for image, _ in representative.take(1):
                yield [tf.zeros(tf.shape(image), tf.uint8)]
                yield [tf.fill(tf.shape(image), tf.constant(255, tf.uint8))]
            for image, _ in representative:
                yield [tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)]

        converter.representative_dataset = dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        # The input stays the pixel bytes apps (MediaPipe) feed in, unquantized: the graph casts them to float and
        # quantizes to int8 (CAST, QUANTIZE: both fast). A quantized uint8 input would start the graph with a
        # uint8-to-int8 requantization that XNNPACK does not take: at 224x224 it cost 0.15 ms of MobileNet v1
        # 0.25's 0.53 ms in int8 on a 2-core AMD EPYC.
        converter.inference_output_type = tf.uint8
    return converter.convert()


class TFLiteRunner:
    """Runs a .tflite with LiteRT, one image at a time, (de)quantizing uint8 tensors."""

    def __init__(self, path_or_bytes, threads=2):
        from ai_edge_litert.interpreter import Interpreter

        kwargs = {"model_content": path_or_bytes} if isinstance(path_or_bytes, bytes) else {"model_path":
                                                                                           path_or_bytes}
        self.interpreter = Interpreter(num_threads=threads, **kwargs)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    @property
    def input_size(self):
        return int(self.input["shape"][1])

    def __call__(self, images):
        results = []
        for image in images:
            x = image[None]
            if self.input["dtype"] == np.uint8:
                scale, zero = self.input["quantization"]  # (0.0, 0): the pixel values themselves
                x = np.clip(np.round(x / scale + zero if scale else x), 0, 255).astype(np.uint8)
            self.interpreter.set_tensor(self.input["index"], x.astype(self.input["dtype"]))
            self.interpreter.invoke()
            y = self.interpreter.get_tensor(self.output["index"])
            if self.output["dtype"] == np.uint8:
                scale, zero = self.output["quantization"]
                y = (y.astype(np.float32) - zero) * scale
            results.append(y[0])
        return np.stack(results)


class MediaPipeClassifier:
    """Runs a .tflite the way a phone app does: MediaPipe Tasks' ImageClassifier, reading the file's metadata.

    Calling it on RGB images (0-255, the model's input size) gives one row of
    scores per image (`classes` long: by default as many as MediaPipe answers),
    filled from MediaPipe's categories by index;
    `names[i]` holds the category names MediaPipe gave for image i's scores.
    """

    def __init__(self, path_or_bytes, classes=None):
        from mediapipe.tasks.python import BaseOptions, vision

        self.classes = classes
        base = (BaseOptions(model_asset_buffer=path_or_bytes) if isinstance(path_or_bytes, bytes)
                else BaseOptions(model_asset_path=path_or_bytes))
        self.classifier = vision.ImageClassifier.create_from_options(
            vision.ImageClassifierOptions(base_options=base, max_results=-1))
        self.names = []

    def __call__(self, images):
        import mediapipe as mp

        rows, self.names = [], []
        for image in images:
            pixels = np.ascontiguousarray(np.clip(np.round(image), 0, 255).astype(np.uint8))
            categories = self.classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=pixels)
                                                  ).classifications[0].categories
            row = np.zeros(self.classes or len(categories), np.float32)
            for category in categories:
                row[category.index] = category.score
            rows.append(row)
            self.names.append({c.index: c.category_name for c in categories})
        return np.stack(rows)

    def close(self):
        self.classifier.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class MediaPipeSegmenter(MediaPipeClassifier):
    """Runs a segmenter's .tflite as a phone app does: MediaPipe Tasks' ImageSegmenter, reading the file's metadata.

    Calling it on RGB images (0-255, the model's input size) gives (height, width, classes) scores per image: the
    confidence mask MediaPipe gives for each class, stacked in class order.
    """

    def __init__(self, path_or_bytes):
        from mediapipe.tasks.python import BaseOptions, vision

        base = (BaseOptions(model_asset_buffer=path_or_bytes) if isinstance(path_or_bytes, bytes)
                else BaseOptions(model_asset_path=path_or_bytes))
        self.classifier = vision.ImageSegmenter.create_from_options(vision.ImageSegmenterOptions(
            base_options=base, output_confidence_masks=True, output_category_mask=False))

    def __call__(self, images):
        import mediapipe as mp

        scores = []
        for image in images:
            pixels = np.ascontiguousarray(np.clip(np.round(image), 0, 255).astype(np.uint8))
            masks = self.classifier.segment(mp.Image(image_format=mp.ImageFormat.SRGB, data=pixels)).confidence_masks
            scores.append(np.stack([np.asarray(m.numpy_view()).reshape(m.height, m.width) for m in masks], -1))
        return np.stack(scores)


def compare(expected, got, fmt, quantize):
    """Verification figures and whether they are within tolerance.

    Float formats must match Keras' probabilities within MAX_ABS_DIFF; quantized
    ones must pick Keras' top class, or one within TIE of it, on enough images.
    """
    images, segmenter = int(len(expected)), expected.ndim == 4
    if segmenter:  # every pixel a row of class scores
        expected, got = expected.reshape(-1, expected.shape[-1]), got.reshape(-1, got.shape[-1])
    picked = np.argmax(got, -1)
    chosen = np.take_along_axis(expected, picked[:, None], -1)[:, 0]
    figures = {"max_abs_diff": float(np.max(np.abs(expected - got))),
               "top1_agreement": float(np.mean(np.argmax(expected, -1) == picked)),
               "top1_agreement_within_ties": float(np.mean(chosen >= expected.max(-1) - TIE)),
               "images": images}
    if segmenter:
        figures["pixels"] = int(len(expected))
    key = (fmt, quantize)
    if key in MAX_ABS_DIFF:
        figures["tolerance"] = {"max_abs_diff": MAX_ABS_DIFF[key]}
        ok = figures["max_abs_diff"] <= MAX_ABS_DIFF[key]
    else:
        minimum = (MIN_PIXEL_AGREEMENT if segmenter else MIN_TOP1_AGREEMENT)[key]
        figures["tolerance"] = {"top1_agreement_within_ties": minimum}
        ok = figures["top1_agreement_within_ties"] >= minimum
    return figures, ok


def default_output(name, fmt, quantize):
    base = os.path.join("saved_models", name)
    return os.path.join(base, "saved_model") if fmt == "saved_model" else os.path.join(
        base, f"{name}_{quantize}.tflite")


def export(model, format="saved_model", quantize="none", data=None, weights=None, output=None, overwrite=False,
           verify=True, model_args=None, representative_count=200):
    """Exports `model` (a .keras file, a registry name or a keras.Model); returns `(path, card)`."""
    if format not in FORMATS:
        raise ValueError(f"--format must be one of {list(FORMATS)}, got {format!r}")
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"--quantize must be one of {list(QUANTIZATIONS)}, got {quantize!r}")
    if format == "saved_model" and quantize != "none":
        raise ValueError(f"--quantize {quantize} applies to --format tflite only")
    if quantize == "int8" and data is None:
        raise ValueError("--quantize int8 needs --data: a representative dataset calibrates the ranges")
    if data is not None and not (str(data).startswith("tfds:") or os.path.isdir(data)):
        raise FileNotFoundError(f"--data {data!r}: no such directory (or use tfds:NAME)")
    net, name, labels = load_model(model, weights, model_args)
    if not kn_layers.takes_raw_pixels(net):
        raise ValueError(f"MODEL {name!r} has no {kn_layers.PREPROCESS_NAME!r} layer, so it does not take raw pixels; "
                         "export a model trained by kerasnets or a registry name")
    output = output or default_output(name, format, quantize)
    classes = net.output_shape[-1]
    if labels is not None and len(labels) != classes:
        raise ValueError(f"MODEL {name!r} predicts {classes} classes but its labels name {len(labels)}")
    labels_path = os.path.join(os.path.dirname(os.path.abspath(output)), "labels.txt")
    if not overwrite:  # the card and labels.txt are part of the artifact: none of them is replaced silently
        for path in (output, card_path(output)):
            if os.path.exists(path):
                raise FileExistsError(f"--output {output!r}: {path!r} exists; pass --overwrite to replace it")
        if labels and os.path.exists(labels_path) and _read_labels(labels_path) != labels:
            raise FileExistsError(f"--output {output!r}: {labels_path!r} holds other labels; export into another "
                                  "folder or pass --overwrite to replace it")
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    tmp = f"{output}.tmp-{os.getpid()}"
    staging = f"{output}.staging-{os.getpid()}"
    try:
        say(f"exporting {name} ({net.count_params():,} parameters) to {format}"
            + (f", quantization {quantize}" if format == "tflite" else ""))
        created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        _write_saved_model(net, staging, tf.uint8 if quantize == "int8" else tf.float32)
        if format == "tflite":
            representative = representative_images(net, data, representative_count) if quantize == "int8" else None
            describe = tflite_metadata.segmenter_metadata if is_segmenter(net) else tflite_metadata.classifier_metadata
            kind = "image segmenter" if is_segmenter(net) else "image classifier"
            content = tflite_metadata.populate(
                _tflite_bytes(staging, quantize, representative),
                describe(name, f"{name}: {kind}, {classes} classes ({quantize} quantization)", version=created,
                         author=f"kerasnets {__version__}", labels=labels),
                {tflite_metadata.LABELS_FILE: ("\n".join(labels) + "\n").encode("utf8")} if labels else None)
            with open(tmp, "wb") as f:
                f.write(content)
        else:
            os.rename(staging, tmp)
        card = {"source": str(model) if not isinstance(model, keras.Model) else name, "weights": weights,
                "format": format, "quantization": quantize, "input": {
                    "shape": [None, *net.input_shape[1:]],
                    "dtype": "uint8" if quantize == "int8" else "float32", "range": [0, 255], "color": "RGB"},
                "task": "segmentation" if is_segmenter(net) else "classification",
                "classes": classes, "labels": labels, "kerasnets": __version__, "created": created}
        if verify:
            card["verification"] = _verify(net, tmp, format, quantize, data)
        if os.path.isdir(output):
            shutil.rmtree(output)
        os.replace(tmp, output)
    finally:
        for leftover in (tmp, staging):
            if os.path.isdir(leftover):
                shutil.rmtree(leftover)
            elif os.path.exists(leftover):
                os.remove(leftover)
    card["size_bytes"] = artifact_size(output)
    if labels:
        atomic_write(labels_path, lambda f: f.write("\n".join(labels) + "\n"))
    atomic_write(card_path(output), lambda f: json.dump(card, f, indent=2))
    say(f"wrote {output} ({card['size_bytes'] / 1e6:.2f} MB), {'labels.txt and ' if labels else ''}"
        f"{os.path.basename(card_path(output))}")
    return output, card


def _verify(net, artifact, fmt, quantize, data):
    """Runs the artifact as its users will and compares with the Keras model: {runtime: figures}.

    A .tflite runs in LiteRT's interpreter and in MediaPipe Tasks (ImageClassifier
    or ImageSegmenter, which read the file's metadata, as a phone app does); a
    segmenter's pixels are compared each as an example. The images are whole
    pixel values, as a camera gives them.
    """
    images = np.round(sample_images(net, data)[0])
    expected = net.predict(images, verbose=0)
    runtimes = {"tensorflow": lambda: run_artifact(artifact, fmt)} if fmt == "saved_model" else {
        "litert": lambda: TFLiteRunner(artifact)}
    if fmt == "tflite":
        runtimes["mediapipe"] = (lambda: MediaPipeSegmenter(artifact)) if is_segmenter(net) else (
            lambda: MediaPipeClassifier(artifact, len(expected[0])))
    results = {}
    for runtime, start in runtimes.items():
        run = start()
        try:
            got = run(images)
        finally:
            if isinstance(run, MediaPipeClassifier):  # (a MediaPipeSegmenter too)
                run.close()
        figures, ok = compare(expected, got, fmt, quantize)
        results[runtime] = figures
        per_pixel = f" ({figures['pixels']:,} pixels)" if "pixels" in figures else ""
        say(f"verified in {runtime} on {figures['images']} images{per_pixel}: max |diff| {figures['max_abs_diff']:.2e}, "
            f"top-1 agreement {figures['top1_agreement']:.3f}, {figures['top1_agreement_within_ties']:.3f} counting "
            f"near-ties (tolerance {figures['tolerance']})")
        if not ok:
            raise ValueError(f"verification failed in {runtime}: {figures} is out of tolerance; nothing was written")
    return results


def _read_labels(path):
    with open(path) as f:
        return [line for line in f.read().split("\n") if line]


def artifact_labels(artifact):
    """The class names of an artifact: a .tflite's own metadata, else its card's, else the labels.txt beside it
    (a training run's), else None."""
    if str(artifact).endswith(".tflite") and os.path.isfile(artifact):
        with open(artifact, "rb") as f:
            content = f.read()
        try:
            metadata = tflite_metadata.read(content)
        except Exception:  # noqa: BLE001 -- another tool's file: its metadata is not ours to judge here
            metadata = None
        if metadata and metadata["labels"]:
            return metadata["labels"]
    card = card_path(artifact)
    if os.path.exists(card):  # the card is the artifact's own word, even that it has no labels
        with open(card) as f:
            return json.load(f).get("labels")
    for folder in (os.path.dirname(os.path.abspath(artifact.rstrip(os.sep))), artifact):
        path = os.path.join(folder, "labels.txt")
        if os.path.isfile(path):
            return _read_labels(path)
    return None


def card_path(output):
    return f"{output.rstrip(os.sep)}.json"


def artifact_size(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)
    return os.path.getsize(path)


def open_artifact(path, fmt=None, precision="off"):
    """(images -> probabilities, input size, whether it is a segmenter) for a SavedModel directory, a .tflite or a
    .keras file.

    `precision` ("off", "bfloat16", "float16", "auto") is the compute precision of a .keras model
    (see `kerasnets.precision.with_precision`); exported artifacts run as they were exported.
    """
    fmt = fmt or ("saved_model" if os.path.isdir(path) else "tflite" if path.endswith(".tflite") else "keras")
    if fmt == "saved_model":
        serve = tf.saved_model.load(path).signatures["serving_default"]
        size = int(serve.structured_input_signature[1]["images"].shape[1])
        segmenter = serve.structured_outputs["probabilities"].shape.rank == 4
        return lambda images: serve(images=tf.constant(images, tf.float32))["probabilities"].numpy(), size, segmenter
    if fmt == "tflite":
        runner = TFLiteRunner(path)
        return runner, runner.input_size, len(runner.output["shape"]) == 4
    model = load_model_file(path)
    if precision_lib.resolve(precision) != "float32":
        model = precision_lib.with_precision(model, precision)
    return lambda images: model.predict(images, verbose=0), int(model.input_shape[1]), is_segmenter(model)


def run_artifact(path, fmt=None):
    """A callable images -> probabilities for a SavedModel directory, a .tflite or a .keras file."""
    return open_artifact(path, fmt)[0]


def _check_artifact(artifact, precision):
    """What predict and segment refuse before any work: a missing artifact, a bad or inapplicable precision."""
    if not os.path.exists(artifact):
        raise FileNotFoundError(f"ARTIFACT {artifact!r}: no such file or directory")
    precision_lib.resolve(precision)
    if precision != "off" and not str(artifact).endswith(".keras"):
        raise ValueError(f"--precision {precision!r} applies to .keras models; {artifact!r} runs as it was exported")


def predict(artifact, images, top_k=5, precision="off"):
    """Top-k (label, score) per image file, from a .keras, a SavedModel directory or a .tflite.

    `precision`: the compute precision of a .keras model ("bfloat16": about 2x as fast on CPUs with
    AVX512_BF16, batch norms folded, see benchmarks/BENCHMARKS.md; "auto": the hardware's best, see
    `kerasnets.precision`).
    """
    _check_artifact(artifact, precision)
    run, size, segmenter = open_artifact(artifact, precision=precision)
    if segmenter:
        raise ValueError(f"ARTIFACT {artifact!r} is a segmenter: use segment() (`kerasnets predict ... --output DIR` "
                         "writes its masks)")
    originals = _read_images(images)
    probabilities = run(np.stack([prepare_image(image, size, False).numpy() for image in originals]))
    labels = artifact_labels(artifact)
    results = []
    for row in probabilities:
        top = np.argsort(row)[::-1][:top_k]
        results.append([(labels[i] if labels and i < len(labels) else str(i), float(row[i])) for i in top])
    return results


def _read_images(paths):
    """Decoded RGB images (uint8 tensors of their own sizes); a clear error naming a file that is not one."""
    decoded = []
    for path in paths:
        try:
            decoded.append(tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False))
        except (tf.errors.OpError, ValueError) as e:
            raise ValueError(f"IMAGE {path!r} is not a readable image ({type(e).__name__})") from None
    return decoded


def palette(classes):
    """One RGB colour per class (uint8, classes x 3): black for class 0 (background), then PASCAL VOC's colours
    (bit-interleaved class index), which users of segmentation tools know."""
    colours = np.zeros((max(classes, 1), 3), np.uint8)
    for index in range(classes):
        label, colour = index, [0, 0, 0]
        for shift in range(7, -1, -1):
            for channel in range(3):
                colour[channel] |= ((label >> channel) & 1) << shift
            label >>= 3
        colours[index] = colour
    return colours


def segment(artifact, images, output, overwrite=False, precision="off", alpha=0.5):
    """Masks for image files from a segmentation artifact (.keras, SavedModel or .tflite).

    Each image is resized whole to the model's input; the class scores are resized back to the image's own size
    (bilinear) before the argmax, so the mask has the image's size. Writes `output/NAME_mask.png` (class index per
    pixel) and `output/NAME_overlay.png` (the image with the classes' colours blended in at `alpha`; class 0
    left clear); nothing is replaced without `overwrite`. Returns `[(image, mask path, overlay path,
    {label: fraction of pixels})]`.
    """
    _check_artifact(artifact, precision)
    names = [os.path.splitext(os.path.basename(path))[0] for path in images]
    targets = [(os.path.join(output, f"{n}_mask.png"), os.path.join(output, f"{n}_overlay.png")) for n in names]
    if len(set(names)) < len(names):
        raise ValueError(f"IMAGES: two files share a name ({sorted(names)}); their masks would overwrite each other")
    existing = [p for pair in targets for p in pair if os.path.exists(p)]
    if existing and not overwrite:
        raise FileExistsError(f"--output {output!r}: {existing[0]!r} exists; pass --overwrite to replace it")
    run, size, segmenter = open_artifact(artifact, precision=precision)
    if not segmenter:
        raise ValueError(f"ARTIFACT {artifact!r} is a classifier, not a segmenter; drop --output to get its top-k")
    originals = _read_images(images)
    probabilities = run(np.stack([prepare_image(image, size, True).numpy() for image in originals]))
    labels = artifact_labels(artifact) or [str(i) for i in range(probabilities.shape[-1])]
    colours = palette(probabilities.shape[-1])
    os.makedirs(output, exist_ok=True)
    results = []
    for image, scores, (mask_path, overlay_path), path in zip(originals, probabilities, targets, images):
        full = tf.image.resize(scores, tf.shape(image)[:2]).numpy()
        mask = np.argmax(full, -1).astype(np.uint8)
        blend = np.where(mask[..., None] > 0, alpha, 0.0)
        overlay = np.round(image.numpy() * (1 - blend) + colours[mask] * blend).astype(np.uint8)
        for target, picture in ((mask_path, mask[..., None]), (overlay_path, overlay)):
            encoded = tf.io.encode_png(picture).numpy()
            atomic_write(target, lambda f, data=encoded: f.write(data), mode="wb")
        counts = np.bincount(mask.ravel(), minlength=len(colours)) / mask.size
        results.append((path, mask_path, overlay_path,
                        {labels[i] if i < len(labels) else str(i): float(f) for i, f in enumerate(counts) if f}))
    return results
