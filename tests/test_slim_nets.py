"""Our networks beside TF-slim's own (the Inception family, MobileNet v1; VGG in test_vgg.py): same endpoints,
same values from slim's checkpoints."""

import dataclasses

import keras
import numpy as np
import pytest

import kerasnets
from slim_graphs import pack_slim_archive, run_slim_net, slim_arg_scope, slim_module
from weight_files import rel_max_diff


@dataclasses.dataclass(frozen=True)
class Case:
    """One of our models beside slim's: `slim_kwargs` go to slim's function, `kwargs` to both."""

    model: str  # registered name
    slim: str = ""  # slim's nets module and function, if not named as the model
    size: int = 224
    kwargs: dict = dataclasses.field(default_factory=dict)
    slim_kwargs: dict = dataclasses.field(default_factory=dict)
    ours: dict = dataclasses.field(default_factory=dict)  # our builder's own arguments for slim's defaults
    base: bool = False  # slim's `<model>_base` (no classifier), our include_top=False

    def slim_net(self):
        slim_name = self.slim or self.model
        module = slim_module(slim_name)
        net = getattr(module, slim_name + ("_base" if self.base else ""))
        if self.base:  # the base takes no is_training: its batch norms read it from an arg_scope
            def net(inputs, is_training, _base=net, **kwargs):
                with slim_arg_scope(is_training):
                    return _base(inputs, **kwargs)
        arg_scope = getattr(module, f"{slim_name}_arg_scope")
        return net, arg_scope


CASES = {
    "inception_v1": Case("inception_v1"),
    "inception_v1_200": Case("inception_v1", size=200),  # slim's classifier pools 7x7: Mixed_5c must be 7x7
    "inception_v2": Case("inception_v2"),
    "inception_v2_half": Case("inception_v2", size=192, kwargs={"depth_multiplier": 0.5, "min_depth": 8}),
    "inception_v3": Case("inception_v3"),  # slim adds its aux head, which ours skips
    # at the default size, with slim's aux head (which needs a known size)
    "inception_v4": Case("inception_v4", size=299, ours={"aux_logits": True}),
    "inception_v4_160": Case("inception_v4", size=160, ours={"aux_logits": True}),
    "inception_resnet_v2": Case("inception_resnet_v2", size=299, ours={"aux_logits": True}),
    # the dense-prediction options, up to the last endpoint slim builds at output stride 8
    "inception_resnet_v2_os8_aligned": Case(
        "inception_resnet_v2", size=224, base=True,
        kwargs={"output_stride": 8, "align_feature_maps": True, "final_endpoint": "PreAuxLogits"}),
    "mobilenet_v1_100": Case("mobilenet_v1_100", slim="mobilenet_v1"),
    # slim's depth_multiplier is keras.applications' (and our) alpha
    "mobilenet_v1_050_160": Case("mobilenet_v1_050", slim="mobilenet_v1", size=160,
                                 slim_kwargs={"depth_multiplier": 0.5}),
    "mobilenet_v1_100_os8": Case("mobilenet_v1_100", slim="mobilenet_v1", base=True, kwargs={"output_stride": 8}),
}


@pytest.fixture(scope="module")
def slim_nets(tmp_path_factory):
    """slim_nets(case) -> (images, checkpoint prefix, slim's endpoints, slim's output): slim's net (1001 classes)
    with random weights, on two images; each built once, when a test first asks for it."""
    made = {}

    def get(name):
        if name not in made:
            case = CASES[name]
            net, arg_scope = case.slim_net()
            images = np.random.default_rng(0).uniform(-1, 1, (2, case.size, case.size, 3)).astype("float32")
            prefix = str(tmp_path_factory.mktemp("slim") / f"{case.model}.ckpt")
            extra = {} if case.base else {"num_classes": 1001}
            made[name] = images, prefix, *run_slim_net(net, arg_scope, images, prefix, **extra, **case.kwargs,
                                                        **case.slim_kwargs)
        return made[name]

    return get


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_network_is_slims(name, slim_nets):
    case = CASES[name]
    images, prefix, end_points, output = slim_nets(name)
    base = list(kerasnets.get_config(case.model).endpoints)
    base = base[:base.index(case.kwargs["final_endpoint"]) + 1] if "final_endpoint" in case.kwargs else base
    assert [e for e in end_points if e in base] == base  # slim's endpoints, in order
    assert set(end_points) - set(base) <= {"AuxLogits", "PreLogits", "PreLogitsFlatten", "global_pool", "AvgPool_1a",
                                           "Logits", "Predictions"}
    top = {"include_top": False} if case.base else {"classes": 1001, "classifier_activation": None}
    model = kerasnets.create_model(case.model, weights=prefix, input_shape=images.shape[1:], **top, **case.kwargs,
                                   **case.ours)
    features = kerasnets.feature_extractor(model, base)(images, training=False)
    for endpoint in base:
        assert features[endpoint].shape == end_points[endpoint].shape, endpoint
        assert rel_max_diff(features[endpoint], end_points[endpoint]) <= 1e-4, endpoint
    outputs = model(images, training=False)
    if case.ours.get("aux_logits"):
        outputs, aux = outputs
        assert rel_max_diff(aux, end_points["AuxLogits"]) <= 1e-4
    assert rel_max_diff(outputs, output) <= 1e-4


# slim's published archives (research/slim README): case -> (weights tag, archive, checkpoint inside it)
SLIM_ARCHIVES = {
    "inception_v1": ("imagenet", "inception_v1_2016_08_28.tar.gz", "inception_v1.ckpt"),
    "inception_v2": ("imagenet", "inception_v2_2016_08_28.tar.gz", "inception_v2.ckpt"),
    "inception_v4": ("imagenet", "inception_v4_2016_09_09.tar.gz", "inception_v4.ckpt"),
    "inception_resnet_v2": ("imagenet_slim", "inception_resnet_v2_2016_08_30.tar.gz",
                            "inception_resnet_v2_2016_08_30.ckpt"),
    "mobilenet_v1_100": ("imagenet_slim", "mobilenet_v1_2018_08_02/mobilenet_v1_1.0_224.tgz",
                         "mobilenet_v1_1.0_224.ckpt"),
}


@pytest.mark.parametrize("name", sorted(SLIM_ARCHIVES))
def test_published_weights_are_slims_archive(name, slim_nets, monkeypatch, tmp_path):
    """slim's archive (here the test checkpoint, packed as slim packs it, where a download would put it);
    1000 classes by default, slim's background class 0 dropped; the aux head's variables skipped."""
    tag, archive_name, member = SLIM_ARCHIVES[name]
    images, prefix, end_points, logits = slim_nets(name)
    published = kerasnets.get_config(name).pretrained(tag)
    assert (published.classes, published.label_offset, published.layout) == (1001, 1, "slim")
    entry = published.file(include_top=True)
    assert (entry.url, entry.member, entry.md5) == ("http://download.tensorflow.org/models/" + archive_name, member,
                                                    None)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    pack_slim_archive(prefix, str(tmp_path / "models" / entry.filename), entry.member)
    model = kerasnets.create_model(name, weights=tag, classifier_activation=None)
    assert model.output.shape[-1] == 1000
    assert rel_max_diff(model(images, training=False), logits[:, 1:]) <= 1e-4
    with pytest.raises(ValueError, match="predicts 1001 or 1000 classes; got classes=10"):
        kerasnets.create_model(name, weights=tag, classes=10)
    if "AuxLogits" in end_points:  # with the aux head too, both classifiers lose the background class
        _, aux = kerasnets.create_model(name, weights=tag, aux_logits=True)(images, training=False)
        assert rel_max_diff(aux, end_points["AuxLogits"][:, 1:]) <= 1e-4


def test_googlenet_is_inception_v1_with_torchvisions_parameters():
    """torchvision's googlenet (its weights' metadata: 6,624,904 parameters, no aux heads) has the same
    convolutions and classifier; its batch norms also have a scale (gamma), which slim's do not."""
    model = kerasnets.googlenet()
    assert model.name == "GoogLeNet"
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    gammas = sum(layer.beta.shape[0] for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
    assert trainable + gammas == 6_624_904
    assert kerasnets.get_config("googlenet") is kerasnets.get_config("inception_v1")
    assert "googlenet" not in kerasnets.list_models()


def test_inception_v2_first_layer_is_slims_separable_convolution():
    model = kerasnets.inception_v2(include_top=False)
    first = model.get_layer("Conv2d_1a_7x7.Conv2D")
    assert isinstance(first, keras.layers.SeparableConv2D) and first.depth_multiplier == 8
    assert first.use_bias and first.strides == (2, 2) and first.kernel_size == (7, 7)
    assert isinstance(model.get_layer("Mixed_5c.Branch_3.MaxPool_0a_3x3"), keras.layers.MaxPooling2D)
    assert isinstance(model.get_layer("Mixed_5b.Branch_3.AvgPool_0a_3x3"), keras.layers.AveragePooling2D)


def test_slim_options_are_checked_before_building():
    with pytest.raises(ValueError, match=r"output_stride must be 8 or 16, got output_stride=32"):
        kerasnets.inception_resnet_v2(output_stride=32)
    with pytest.raises(ValueError, match=r"output_stride=8 builds .* up to PreAuxLogits .* include_top=True"):
        kerasnets.inception_resnet_v2(output_stride=8)
    with pytest.raises(ValueError, match=r"final_endpoint='Conv2d_7b_1x1'"):
        kerasnets.inception_resnet_v2(output_stride=8, include_top=False, final_endpoint="Conv2d_7b_1x1")
    with pytest.raises(ValueError, match=r"aux_logits=True needs a known input size .* Mixed_6h .* at least 107x107"):
        kerasnets.inception_v4(aux_logits=True, input_shape=(None, None, 3))
    with pytest.raises(TypeError, match="align_feature_maps must be True or False, got align_feature_maps='yes'"):
        kerasnets.inception_resnet_v2(align_feature_maps="yes")


def test_output_stride_8_keeps_the_35x35_grid_for_dense_prediction():
    """As slim: Mixed_6a strides 1 and the 17x17 units dilate by 2, so PreAuxLogits is at reduction 8; with
    aligned feature maps every endpoint is the input's size over its reduction."""
    model = kerasnets.inception_resnet_v2(include_top=False, output_stride=8, align_feature_maps=True,
                                          input_shape=(224, 224, 3))
    assert kerasnets.endpoints(model)[-1] == "PreAuxLogits" and model.output.shape == (None, 28, 28, 1088)
    reductions = kerasnets.features.reductions(model)
    assert reductions["Mixed_6a"] == reductions["PreAuxLogits"] == 8
    assert all(model.get_layer(e).output.shape[1] == 224 // r for e, r in reductions.items())
    assert model.get_layer("Repeat_1.block17_1.Branch_1.Conv2d_0b_1x7").dilation_rate == (2, 2)
