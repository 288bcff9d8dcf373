"""Weights published for PyTorch: a state dict written by torchvision or timm itself, loaded through `weights=`,
gives the reference's own logits on the same batch (`tests/torch_reference.py`)."""

import os
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import kerasnets
from kerasnets import weights as weights_lib
from torch_reference import MEAN, STD, logits, reference_model

# our name, the library publishing the layout, its name there, whether its kernels need redrawing at He's scale
CASES = [("resnext50_32x4d", "torchvision", "resnext50_32x4d", False), ("seresnet50", "timm", "seresnet50", False),
         ("seresnext50_32x4d", "timm", "seresnext50_32x4d", False),
         ("shufflenet_v2_x0_5", "torchvision", "shufflenet_v2_x0_5", True)]
SHAPE = (64, 64, 3)


def assert_agrees(label, got, expected):
    """Relative difference <= 1e-4 and the same argmax, on a batch whose images the reference tells apart (a
    reference whose logits ignore the input would make any loader agree)."""
    scale = float(np.max(np.abs(expected)))
    assert np.max(np.abs(expected[0] - expected[-1])) > 0.01 * scale, f"{label}: the reference ignores its input"
    worst = float(np.max(np.abs(got - expected))) / scale
    print(f"{label}: worst relative difference {worst:.2e}")
    assert worst <= 1e-4, label
    np.testing.assert_array_equal(got.argmax(-1), expected.argmax(-1))


def write_both(reference, directory, name):
    """The reference's state dict as torchvision saves it (.pth) and as the Hugging Face hub holds it
    (.safetensors): (pth path, safetensors path)."""
    state = reference.state_dict()
    pth, safetensors = str(directory / f"{name}.pth"), str(directory / f"{name}.safetensors")
    torch.save(state, pth)
    save_file({k: v.contiguous() for k, v in state.items()}, safetensors)
    return pth, safetensors


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).normal(0, 1, (2,) + SHAPE).astype("float32")  # normalised, as torchvision's


@pytest.fixture(scope="module")
def written(tmp_path_factory, images):
    """{our name: (.pth path, .safetensors path, the reference's logits, its feature width)}."""
    root = tmp_path_factory.mktemp("torch")
    made = {}
    for name, library, theirs, he_kernels in CASES:
        reference = reference_model(library, theirs, he_kernels=he_kernels)
        pth, safetensors = write_both(reference, root, name)
        made[name] = (pth, safetensors, logits(reference, images), reference.state_dict()["fc.weight"].shape[1])
    return made


@pytest.mark.parametrize("name", [case[0] for case in CASES])
def test_a_state_dict_written_by_the_reference_gives_its_logits(name, written, images):
    pth, safetensors, expected, width = written[name]
    for path in (pth, safetensors):
        model = kerasnets.create_model(name, weights=path, input_shape=SHAPE, classifier_activation=None)
        got = np.asarray(model(images, training=False))
        assert_agrees(f"{name} from {path.rsplit('.', 1)[-1]}", got, expected)
    # Without the classifier: the same features, the file's fc left unused.
    bare = kerasnets.create_model(name, weights=safetensors, include_top=False, input_shape=SHAPE, pooling="avg")
    assert bare.output.shape[-1] == width


def test_files_that_do_not_fit_are_named_before_any_weight_changes(written, tmp_path):
    pth, safetensors, _, _ = written["seresnet50"]
    # Another architecture: SE-ResNet-50's squeeze-and-excitation keys have no place in ResNeXt-50.
    with pytest.raises(ValueError, match=r"has 64 key\(s\) this model does not, first: \['layer1.0.se.fc1.bias'"):
        kerasnets.resnext50_32x4d(weights=safetensors, input_shape=SHAPE)
    # A key missing: named, with the closest key the file has.
    state = torch.load(pth, weights_only=True)
    del state["layer2.1.bn2.running_var"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"lacks 1 key\(s\) .*\['layer2.1.bn2.running_var'\]; the closest in the file "
                                         r"is 'layer\d.1.bn2.running_\w+'"):
        kerasnets.seresnet50(weights=str(tmp_path / "missing.pth"), input_shape=SHAPE)
    # A shape that does not fit: the layer and both shapes.
    state = torch.load(pth, weights_only=True)
    state["layer3.0.conv2.weight"] = state["layer3.0.conv2.weight"][:, :128]
    torch.save(state, tmp_path / "narrow.pth")
    with pytest.raises(ValueError, match=r"layer 'block3.unit_1.bottleneck.conv2' expects .*\(3, 3, 256, 256\), "
                                         r"the file has \(3, 3, 128, 256\)"):
        kerasnets.seresnet50(weights=str(tmp_path / "narrow.pth"), input_shape=SHAPE)
    # A whole pickled model is never unpickled.
    torch.save(reference_model("timm", "seresnet50"), tmp_path / "model.pth")
    with pytest.raises(ValueError, match=r"is not a plain state dict .* save model.state_dict\(\) instead"):
        kerasnets.seresnet50(weights=str(tmp_path / "model.pth"), input_shape=SHAPE)
    # A family without a PyTorch layout says which formats it loads.
    with pytest.raises(ValueError, match=r"model 'xception' has no torch layout \(a PyTorch state dict\)"):
        kerasnets.xception(weights=safetensors, input_shape=(71, 71, 3))


def test_published_pytorch_weights_are_registry_data(tmp_path, monkeypatch):
    """torchvision's files with the SHA-256 prefix of their names, timm's from the hub under distinct cache names;
    ImageNet mean/std preprocessing; top-1 as published. A cached file whose digest is not its name's is refused."""
    config = kerasnets.get_config("resnext50_32x4d")
    published = config.pretrained("torchvision")
    entry = published.file(include_top=True)
    assert entry.url == "https://download.pytorch.org/models/resnext50_32x4d-1a0047aa.pth"
    assert (entry.sha256_prefix, published.layout, published.preprocessing, published.top1) == (
        "1a0047aa", "torch", "torch", 81.198)
    assert published.file(include_top=False).url == entry.url  # one state dict, the fc left unused without the top
    assert published.crop_fraction == 0.9655  # torchvision's central 224 of 232 for its second recipe
    # Inception v3's: 299 of 342, and pixels in [-1, 1] (its transform_input), as torchvision's weights enum says.
    inception = kerasnets.get_config("inception_v3").pretrained("torchvision")
    assert (inception.file(True).url, inception.file(True).sha256_prefix, inception.input_size,
            inception.crop_fraction, inception.preprocessing, inception.top1) == (
        "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth", "0cc3c7bd", 299, 0.8743, "tf", 77.294)
    assert kerasnets.get_config("shufflenet_v2_x0_5").pretrained("torchvision").file(True).sha256_prefix == (
        "f707e7126e")
    timm = kerasnets.get_config("seresnet50").pretrained("timm:seresnet50.ra2_in1k")
    assert timm.file(include_top=True).url == (
        "https://huggingface.co/timm/seresnet50.ra2_in1k/resolve/main/model.safetensors")
    assert timm.file(include_top=True).filename == "timm_seresnet50.ra2_in1k.safetensors" and timm.top1 == 80.26
    assert timm.crop_fraction == 0.875 and kerasnets.get_config("seresnet50").pretrained(
        "timm:seresnet50.a1_in1k").crop_fraction == 0.95  # timm's crop_pct
    assert kerasnets.get_config("resnext101_32x8d").pretrained("torchvision_v1").top1 == 79.312
    # The hash check, on a file already in Keras' cache (nothing is downloaded).
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / entry.filename).write_bytes(b"not the published file")
    with pytest.raises(ValueError, match=r"weights='torchvision': .* has SHA-256 [0-9a-f]{16}\.\.\., not the "
                                         r"1a0047aa\.\.\. its publisher named it after"):
        kerasnets.resnext50_32x4d(weights="torchvision")
    import hashlib

    path = tmp_path / "models" / "x.pth"
    path.write_bytes(b"x")
    weights_lib.check_sha256_prefix(str(path), hashlib.sha256(b"x").hexdigest()[:8], "torchvision")  # passes


@pytest.mark.parametrize("library, name", [("torchvision", "resnet18"), ("torchvision", "resnet50"),
                                           ("timm", "resnet50")])
def test_torchvision_and_timm_resnets_load_and_choose_their_architecture(library, name, tmp_path, images,
                                                                          monkeypatch):
    """ResNet-18 is torchvision's as built; ResNet-50's state dict builds ResNet v1.5 (stride in the 3x3, no biases,
    epsilon 1e-5) by itself, where the default is keras.applications' ResNet50. timm's ResNets share the layout,
    and its published tag, from Keras' cache as downloaded from the hub, chooses the same architecture."""
    reference = reference_model(library, name, seed=len(library))  # timm's a draw of its own
    expected = logits(reference, images)
    path, safetensors = write_both(reference, tmp_path, name)
    got = kerasnets.create_model(name, weights=safetensors, input_shape=SHAPE, classifier_activation=None)(images)
    assert_agrees(f"{library} {name} from safetensors", np.asarray(got), expected)
    if library == "timm":
        tag = f"timm:{name}.a1_in1k"
        monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
        cached = kerasnets.get_config(name).pretrained(tag).file(include_top=True).filename
        os.makedirs(tmp_path / "keras" / "models")
        os.rename(safetensors, tmp_path / "keras" / "models" / cached)
        model = kerasnets.create_model(name, weights=tag, input_shape=SHAPE, classifier_activation=None)
        assert model.name == "ResNet50_v1_5"
        assert_agrees(f"{tag} from the cache", np.asarray(model(images, training=False)), expected)
    model = kerasnets.create_model(name, weights=path, input_shape=SHAPE, classifier_activation=None)
    got = np.asarray(model(images, training=False))
    assert_agrees(f"{name} from pth", got, expected)
    assert kerasnets.get_config(name).preprocessing_for(path) == "torch"
    if name == "resnet50":
        assert model.name == "ResNet50_v1_5" and model.count_params() == sum(
            p.numel() for p in reference.state_dict().values() if p.is_floating_point())
        assert model.get_layer("block2.unit_1.bottleneck_v1.conv2").strides == (2, 2)
        keras_layout = kerasnets.resnet50(input_shape=SHAPE)
        assert keras_layout.name == "ResNet50"
        assert keras_layout.get_layer("block2.unit_1.bottleneck_v1.conv1").strides == (2, 2)
        # Forced to keras.applications' architecture, the file lacks its convolutions' biases: named.
        with pytest.raises(ValueError, match=r"lacks 53 key\(s\) this model needs, first: \['conv1.bias'"):
            kerasnets.resnet50(weights=path, variant="keras", input_shape=SHAPE)
        with pytest.raises(ValueError, match=r"variant must be None \(chosen by the weights\) or one of \('keras', "
                                             r"'torchvision'\), got variant='caffe'"):
            kerasnets.resnet50(variant="caffe")
        with pytest.raises(ValueError, match="torchvision has no resnet50_v2"):
            kerasnets.resnet50_v2(variant="torchvision")


def test_torchvision_vgg16_reads_fc6_channels_first_into_either_head(tmp_path):
    """torchvision flattens pool5 as (channels, height, width), Keras as (height, width, channels): fc6's rows are
    reordered, for the dense head and for the fully convolutional one (fc6 as a 7x7 convolution)."""
    reference = reference_model("torchvision", "vgg16")
    images = np.random.default_rng(1).normal(0, 1, (2, 224, 224, 3)).astype("float32")
    expected = logits(reference, images)
    paths = write_both(reference, tmp_path, "vgg16")
    del reference
    for path, kwargs in zip(paths, ({}, {"fully_convolutional": True})):  # the dense head from .pth
        model = kerasnets.vgg16(weights=path, classifier_activation=None, **kwargs)
        got = np.asarray(model(images, training=False)).reshape(expected.shape)
        assert_agrees(f"vgg16 {kwargs} from {path.rsplit('.', 1)[-1]}", got, expected)
        del model
    assert kerasnets.get_config("vgg16").pretrained("torchvision").top1 == 71.592


def test_files_that_are_not_state_dicts_are_refused_by_name(written, tmp_path, monkeypatch):
    pth, _, _, _ = written["seresnet50"]
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=r"broken.safetensors' is not a readable .safetensors file"):
        kerasnets.seresnet50(weights=str(broken), input_shape=SHAPE)
    torch.save([torch.zeros(2)], tmp_path / "list.pth")
    with pytest.raises(ValueError, match=r"holds a list, not a state dict of tensors"):
        kerasnets.seresnet50(weights=str(tmp_path / "list.pth"), input_shape=SHAPE)
    # Without torch a .pth cannot be read: the error says what to install, or to convert to .safetensors.
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"reading it needs torch \(pip install torch\), or convert it to "
                                          r"\.safetensors"):
        kerasnets.seresnet50(weights=pth, input_shape=SHAPE)


@pytest.mark.parametrize("size", [64, 67])
def test_torchvision_googlenet_runs_as_torchvision_runs_it(size, tmp_path):
    """GoogLeNet's published file was trained with transform_input=True (ImageNet-normalised input turned back into
    pixels in [-1, 1]): the same pixels through the registered preprocessing give torchvision's logits. An odd size
    checks the ceil-mode pools; the file's auxiliary classifiers are left unused."""
    reference = reference_model("torchvision", "googlenet", he_kernels=True, aux_logits=True, transform_input=True,
                                init_weights=True)
    pixels = np.random.default_rng(2).uniform(0, 255, (2, size, size, 3)).astype("float32")
    expected = logits(reference, ((pixels / 255 - MEAN) / STD).astype("float32"))
    pth, safetensors = write_both(reference, tmp_path, "googlenet")
    path = pth if size % 2 == 0 else safetensors
    assert any(k.startswith("aux1.") for k in reference.state_dict())
    config = kerasnets.get_config("googlenet")
    assert config.preprocessing_for(path) == config.pretrained("torchvision").preprocessing == "tf"
    model = kerasnets.googlenet(weights=path, input_shape=(size, size, 3), classifier_activation=None)
    got = np.asarray(model(config.preprocess(pixels, weights=path), training=False))
    assert_agrees(f"googlenet at {size} from {path.rsplit('.', 1)[-1]}", got, expected)
    assert model.name == "GoogLeNet_torchvision" and kerasnets.inception_v1(input_shape=(size, size, 3)).name == (
        "InceptionV1")
    assert model.count_params() == sum(v.numel() for k, v in reference.state_dict().items()
                                       if v.is_floating_point() and not k.startswith(("aux1.", "aux2.")))
    # slim's architecture (batch norm without gamma) cannot take it: named, before any weight changes.
    with pytest.raises(ValueError, match=r"has 57 key\(s\) this model does not, first: \['conv1.bn.weight'"):
        kerasnets.inception_v1(weights=path, variant="slim", input_shape=(size, size, 3))


def test_torchvision_inception_v3_with_its_auxiliary_classifier(tmp_path):
    """At 299x299 both of torchvision's classifiers (its AuxLogits read Mixed_6e) agree with ours (.safetensors);
    without aux_logits the file's AuxLogits are left unused (.pth, 139x139); where our auxiliary head would differ
    (a smaller input shrinks its 5x5 convolution, which torchvision's cannot), the layer is named."""
    reference = reference_model("torchvision", "inception_v3", aux_logits=True, transform_input=True,
                                init_weights=True)
    pixels = np.random.default_rng(3).uniform(0, 255, (2, 299, 299, 3)).astype("float32")
    seen = {}
    reference.Mixed_6e.register_forward_hook(lambda module, inputs, output: seen.update(mixed_6e=output))
    expected = logits(reference, ((pixels / 255 - MEAN) / STD).astype("float32"))
    with torch.no_grad():
        expected_aux = reference.AuxLogits(seen["mixed_6e"]).numpy()
    small = pixels[:, ::2, ::2][:, :139, :139]
    expected_small = logits(reference, ((small / 255 - MEAN) / STD).astype("float32"))
    pth, path = write_both(reference, tmp_path, "inception_v3")
    del reference
    config = kerasnets.get_config("inception_v3")
    model = kerasnets.inception_v3(weights=path, aux_logits=True, classifier_activation=None)
    assert model.name == "InceptionV3_torchvision"
    got, got_aux = (np.asarray(t) for t in model(config.preprocess(pixels, weights=path), training=False))
    for name, ours, theirs in (("Logits", got, expected), ("AuxLogits", got_aux, expected_aux)):
        assert_agrees(f"inception_v3 {name}", ours, theirs)
    del model
    plain = kerasnets.inception_v3(weights=pth, input_shape=(139, 139, 3), classifier_activation=None)
    assert "AuxLogits" not in [layer.name for layer in plain.layers]
    assert_agrees("inception_v3 at 139 from pth", np.asarray(plain(config.preprocess(small, weights=pth))),
                  expected_small)
    with pytest.raises(ValueError, match=r"has a layer 'AuxLogits.Conv2d_2a_1x1' that its PyTorch layout does not "
                                         r"map"):
        kerasnets.inception_v3(weights=path, aux_logits=True, input_shape=(107, 107, 3))


def test_summary_shows_the_architecture_a_variant_builds(capsys):
    """`kerasnets summary --variant torchvision` builds torchvision's GoogLeNet: named so, with torchvision's own
    count of parameters and buffers; a model with one architecture, or a .keras file, refuses the flag."""
    from kerasnets import cli
    from torch_reference import torchvision

    reference = torchvision().models.googlenet(aux_logits=False, init_weights=False)
    count = sum(v.numel() for v in reference.state_dict().values() if v.is_floating_point())
    assert cli.main(["summary", "googlenet", "--variant", "torchvision", "--input-size", "64"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "model InceptionV1_torchvision"
    total = next(line.split() for line in out.splitlines() if line.startswith("total"))
    assert total[2] == f"{count:,}"
    assert cli.main(["summary", "vgg16", "--variant", "torchvision"]) == 2
    assert "--variant applies to models built in more than one architecture" in capsys.readouterr().err


def test_every_torchvision_entry_is_torchvision_s_own_weights_enum():
    """Each registered torchvision file is one of torchvision's weights enums (checked against torchvision itself,
    not copied figures): the same URL, acc@1, and input size and crop (transforms' crop_size / resize_size)."""
    from torch_reference import torchvision

    models = torchvision().models
    checked = 0
    for name in kerasnets.list_models(pretrained=True):
        config = kerasnets.get_config(name)
        for published in config.weights:
            if published.layout != "torch" or published.tag.startswith("timm:"):
                continue
            theirs = {"inception_v1": "googlenet"}.get(name, name)
            enums = {w.url: w for w in models.get_model_weights(theirs)}
            entry = enums[published.file(include_top=True).url]
            transforms = entry.transforms()
            assert published.top1 == entry.meta["_metrics"]["ImageNet-1K"]["acc@1"], (name, published.tag)
            assert published.input_size == transforms.crop_size[0], name
            assert published.crop_fraction == round(transforms.crop_size[0] / transforms.resize_size[0], 4), name
            checked += 1
    assert checked == 20  # ResNet 5 + 3 v1, ResNeXt 2 + 2, VGG 2, ShuffleNet v2 4, GoogLeNet, Inception v3


def test_every_timm_entry_is_timm_s_own_pretrained_cfg():
    """Each registered timm tag is one timm publishes on the hub (its pretrained cfg, from timm itself), with that
    cfg's crop_pct, input size and ImageNet mean/std (our "torch" preprocessing)."""
    from torch_reference import torchvision

    torchvision()  # timm imports it
    import timm

    checked = []
    for name in kerasnets.list_models(pretrained=True):
        for published in kerasnets.get_config(name).weights:
            if not published.tag.startswith("timm:"):
                continue
            tag = published.tag.removeprefix("timm:")
            cfg = timm.models.get_pretrained_cfg(tag)
            assert cfg is not None and cfg.hf_hub_id in ("timm/", f"timm/{tag}"), tag
            url = published.file(include_top=True).url
            assert url == f"https://huggingface.co/timm/{tag}/resolve/main/model.safetensors", tag
            assert (published.crop_fraction, published.input_size) == (cfg.crop_pct, cfg.input_size[1]), tag
            assert published.preprocessing == "torch", tag
            np.testing.assert_allclose((cfg.mean, cfg.std), (MEAN, STD), err_msg=tag)
            assert tag.split(".")[0] == name, tag  # the same architecture's weights
            checked.append(tag)
    assert len(checked) == 11 and "resnet50.a1_in1k" in checked  # ResNet 5, ResNeXt 1, SE nets 5
