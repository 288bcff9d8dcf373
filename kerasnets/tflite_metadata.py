"""TFLite model metadata, so phone apps load an export as it is.

MediaPipe Tasks (`ImageClassifier` on Android, iOS, web and Python) and the
LiteRT support library read a model's own metadata: what the input image is
(RGB, how to normalise 0-255 pixels), what the output means and the label of
each score. The format is TFLite's metadata schema (a `TFLITE_METADATA`
flatbuffer, file identifier `M001`, referenced from the model's `metadata`
list) with associated files packed as an uncompressed zip appended to the
model (https://ai.google.dev/edge/litert/models/metadata).

Written with the schema's generated Python that MediaPipe ships
(`mediapipe.tasks.metadata.*_py_generated`) and `flatbuffers`. MediaPipe's own
`metadata_writers` are not used: in mediapipe 1.2 they import a compiled
module (`mediapipe.tasks.cc.metadata.python`) its wheels no longer contain, and
`tflite-support` would pull protobuf below what TensorFlow 2.21 needs.
"""

import io
import zipfile

METADATA_NAME = "TFLITE_METADATA"  # the model's metadata entry that MediaPipe and LiteRT look for
METADATA_IDENTIFIER = b"M001"
MODEL_IDENTIFIER = b"TFL3"
LABELS_FILE = "labels.txt"
# Every field written here (image properties, normalisation, stats, axis-label files) is in
# the schema's first version, so any metadata parser reads it.
MIN_PARSER_VERSION = "1.0.0"


def _schemas():
    from mediapipe.tasks.metadata import metadata_schema_py_generated as metadata_fb
    from mediapipe.tasks.metadata import schema_py_generated as model_fb

    return metadata_fb, model_fb


def classifier_metadata(name, description, version, author, labels=None, mean=(0.0,), std=(1.0,)):
    """The metadata of an image classifier: RGB image in, one score per class out.

    `mean`/`std` normalise raw 0-255 pixels as `(pixel - mean) / std`; kerasnets'
    models normalise inside their graph, so they take the pixels as they are
    (mean 0, std 1). `labels`: one name per class, written as the output's
    `TENSOR_AXIS_LABELS` file; None writes no labels (apps then answer with indices).
    """
    md, _ = _schemas()
    image = md.TensorMetadataT(
        name="image", description="RGB image, pixels in [0, 255] (the model normalises them itself)",
        content=md.ContentT(contentPropertiesType=md.ContentProperties.ImageProperties,
                            contentProperties=md.ImagePropertiesT(colorSpace=md.ColorSpaceType.RGB)),
        processUnits=[md.ProcessUnitT(optionsType=md.ProcessUnitOptions.NormalizationOptions,
                                      options=md.NormalizationOptionsT(mean=list(mean), std=list(std)))],
        stats=md.StatsT(max=[255.0], min=[0.0]))
    scores = md.TensorMetadataT(
        name="probability", description="Probability of each class (softmax; they sum to 1)",
        content=md.ContentT(contentPropertiesType=md.ContentProperties.FeatureProperties,
                            contentProperties=md.FeaturePropertiesT()),
        stats=md.StatsT(max=[1.0], min=[0.0]),
        associatedFiles=[md.AssociatedFileT(name=LABELS_FILE, description="One label per class, in score order",
                                            type=md.AssociatedFileType.TENSOR_AXIS_LABELS)] if labels else None)
    subgraph = md.SubGraphMetadataT(inputTensorMetadata=[image], outputTensorMetadata=[scores])
    return md.ModelMetadataT(name=name, description=description, version=version, author=author,
                             subgraphMetadata=[subgraph], minParserVersion=MIN_PARSER_VERSION)


def segmenter_metadata(name, description, version, author, labels=None, mean=(0.0,), std=(1.0,)):
    """The metadata of an image segmenter: RGB image in, one score per class and pixel out.

    The output is described as the TFLite Support library's segmenter writer
    describes it (a grayscale image whose height and width are dimensions 1 and
    2, class labels on the last axis); the input as `classifier_metadata`'s.
    """
    md, _ = _schemas()
    model = classifier_metadata(name, description, version, author, labels, mean, std)
    masks = md.TensorMetadataT(
        name="segmentation_masks", description="Probability of each class at each pixel (softmax over the last axis)",
        content=md.ContentT(contentPropertiesType=md.ContentProperties.ImageProperties,
                            contentProperties=md.ImagePropertiesT(colorSpace=md.ColorSpaceType.GRAYSCALE),
                            range=md.ValueRangeT(min=1, max=2)),
        associatedFiles=[md.AssociatedFileT(name=LABELS_FILE, description="One label per class, in score order",
                                            type=md.AssociatedFileType.TENSOR_AXIS_LABELS)] if labels else None)
    model.subgraphMetadata[0].outputTensorMetadata = [masks]
    return model


def populate(model_bytes, metadata, files=None):
    """`model_bytes` (a .tflite) with `metadata` (a ModelMetadataT) and `files` ({name: bytes}) packed in."""
    import flatbuffers

    _, model_fb = _schemas()
    model = model_fb.ModelT.InitFromPackedBuf(bytearray(_flatbuffer_part(model_bytes)), 0)
    builder = flatbuffers.Builder(0)
    builder.Finish(metadata.Pack(builder), file_identifier=METADATA_IDENTIFIER)
    buffer = model_fb.BufferT()
    buffer.data = bytearray(builder.Output())
    model.buffers = (model.buffers or []) + [buffer]
    entry = model_fb.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if _text(m.name) != METADATA_NAME] + [entry]
    builder = flatbuffers.Builder(0)
    _write_quantization_vectors_once(model, builder)
    builder.Finish(model.Pack(builder), file_identifier=MODEL_IDENTIFIER)
    out = io.BytesIO(bytes(builder.Output()))
    out.seek(0, io.SEEK_END)
    if files:  # appended as a zip; metadata readers take the files uncompressed
        with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as archive:
            for name, content in files.items():
                archive.writestr(name, content)
    return out.getvalue()


def _write_quantization_vectors_once(model, builder):
    """Makes `model.Pack(builder)` write each distinct quantization vector once, every tensor with it pointing there.

    The converter writes a scale and a zero point per output channel for every
    int8 filter and bias, each tensor its own vectors; the zero points are all
    zero, 8 bytes each (the schema's int64). A flatbuffer may point many tables
    at one vector, so tensors with equal vectors share them: ShuffleNet v2 x0.5's
    int8 file goes from 1,539,808 to 1,482,200 bytes, and what LiteRT and
    MediaPipe read from it is unchanged.
    """
    import numpy as np

    _, model_fb = _schemas()
    written = {}  # (dtype, bytes) -> the vector's offset in `builder`

    def vector(values, dtype):
        values = np.asarray(values, dtype)
        key = (values.dtype.str, values.tobytes())
        if key not in written:
            written[key] = builder.CreateNumpyVector(values)
        return written[key]

    fields = (("min", np.float32, model_fb.QuantizationParametersAddMin),  # the schema's types
              ("max", np.float32, model_fb.QuantizationParametersAddMax),
              ("scale", np.float32, model_fb.QuantizationParametersAddScale),
              ("zeroPoint", np.int64, model_fb.QuantizationParametersAddZeroPoint))

    class SharedVectors(model_fb.QuantizationParametersT):
        def Pack(self, builder):  # the generated Pack, but vectors through `vector`
            vectors = [(add, vector(getattr(self, field), dtype))
                       for field, dtype, add in fields if getattr(self, field) is not None]
            details = self.details.Pack(builder) if self.details is not None else None
            model_fb.QuantizationParametersStart(builder)
            for add, offset in vectors:
                add(builder, offset)
            model_fb.QuantizationParametersAddDetailsType(builder, self.detailsType)
            if details is not None:
                model_fb.QuantizationParametersAddDetails(builder, details)
            model_fb.QuantizationParametersAddQuantizedDimension(builder, self.quantizedDimension)
            return model_fb.QuantizationParametersEnd(builder)

    for subgraph in model.subgraphs or []:
        for tensor in subgraph.tensors or []:
            if tensor.quantization is not None:
                tensor.quantization = SharedVectors(**vars(tensor.quantization))


def _flatbuffer_part(model_bytes):
    """The model without an appended zip of associated files (a re-populated file has one)."""
    try:
        with zipfile.ZipFile(io.BytesIO(model_bytes)) as archive:
            start = min(info.header_offset for info in archive.infolist()) if archive.infolist() else None
    except zipfile.BadZipFile:
        return model_bytes
    return model_bytes if start is None else model_bytes[:start]


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def read(model_bytes):
    """What an app reads from a .tflite: a dict of the metadata, its input/output tensors and its labels.

    None where the model has no metadata. Keys: name, description, version,
    author, min_parser_version, input ({name, color_space, mean, std, shape,
    dtype}), output ({name, shape, dtype}), labels (list or None).
    """
    metadata_fb, model_fb = _schemas()
    model = model_fb.Model.GetRootAs(bytearray(model_bytes), 0)
    buffer_index = next((model.Metadata(i).Buffer() for i in range(model.MetadataLength())
                         if _text(model.Metadata(i).Name()) == METADATA_NAME), None)
    if buffer_index is None:
        return None
    data = model.Buffers(buffer_index).DataAsNumpy().tobytes()
    meta = metadata_fb.ModelMetadataT.InitFromPackedBuf(bytearray(data), 0)
    graph = model.Subgraphs(0)

    def tensor(index):
        t = graph.Tensors(index)
        names = {v: k for k, v in vars(model_fb.TensorType).items() if not k.startswith("_")}
        return {"shape": t.ShapeAsNumpy().tolist(), "dtype": names[t.Type()].lower()}

    # Other tools' files may leave any part out: what is missing reads as None.
    subgraph = (meta.subgraphMetadata or [metadata_fb.SubGraphMetadataT()])[0]
    image = (subgraph.inputTensorMetadata or [metadata_fb.TensorMetadataT()])[0]
    scores = (subgraph.outputTensorMetadata or [metadata_fb.TensorMetadataT()])[0]
    norm = next((u.options for u in image.processUnits or []
                 if u.optionsType == metadata_fb.ProcessUnitOptions.NormalizationOptions), None)
    labels = None
    label_file = next((f for f in scores.associatedFiles or []
                       if f.type == metadata_fb.AssociatedFileType.TENSOR_AXIS_LABELS), None)
    if label_file is not None:
        try:
            with zipfile.ZipFile(io.BytesIO(model_bytes)) as archive:
                labels = archive.read(_text(label_file.name)).decode("utf8").splitlines()
        except (zipfile.BadZipFile, KeyError):
            labels = None
    color_spaces = {v: k for k, v in vars(metadata_fb.ColorSpaceType).items() if not k.startswith("_")}
    properties = image.content.contentProperties if image.content is not None else None
    return {
        "name": _text(meta.name), "description": _text(meta.description), "version": _text(meta.version),
        "author": _text(meta.author), "min_parser_version": _text(meta.minParserVersion),
        "input": {"name": _text(image.name),
                  "color_space": color_spaces.get(getattr(properties, "colorSpace", None)),
                  "mean": None if norm is None else [float(v) for v in norm.mean],
                  "std": None if norm is None else [float(v) for v in norm.std],
                  **tensor(graph.Inputs(0))},
        "output": {"name": _text(scores.name), **tensor(graph.Outputs(0))},
        "labels": labels,
    }
