from setuptools import find_packages, setup

setup(
    name="kerasnets",
    version="0.1.0",
    description="Classic CNN architectures for Keras 3 with TF-slim endpoints and real weight loading",
    long_description=open("README.md", encoding="utf8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["kerasnets", "kerasnets.*"]),
    package_data={"kerasnets": ["imagenet_classes.txt"]},  # ImageNet's class names, for exports' metadata
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.16",
        "keras>=3.0",
        "tensorflow-datasets",
        # tensorflow-datasets 4.9 imports importlib_resources on every download (DatasetBuilder.code_path)
        # but declares it only for Python < 3.9; without it `--data tfds:NAME` fails on a fresh install.
        "importlib_resources",
        "h5py",
        "numpy",
        "tensorboard",  # TensorFlow 2.21 no longer pulls it in; training writes TensorBoard logs
        "matplotlib",  # training_curves.png
        "ai-edge-litert",  # LiteRT's interpreter, which runs exported .tflite files to verify them
        # MediaPipe: its TFLite metadata schema (generated Python) writes the metadata phone apps read, and its
        # Tasks ImageClassifier opens every .tflite export to verify it as an app would.
        "mediapipe",
        # safetensors: reads PyTorch-published weights (timm's, Hugging Face's) as NumPy arrays, without torch.
        "safetensors",
    ],
    extras_require={
        # scikit-learn: its bundled digits are the real images the learning tests train on;
        # nbclient/nbformat/ipykernel run the notebooks in notebooks/ as tests; jax is a second Keras
        # backend, on which the builders must build and load every weight layout as they do on TF;
        # pytest-xdist runs the test files on two workers (pytest.ini), which keeps both cores busy while
        # one of them traces or writes files; tf-slim holds TF-slim's own networks, the reference the
        # Inception family is tested against (tests/slim_graphs.py; the nets tf-slim lacks come from
        # tests/reference-nets.txt, installed without dependencies); torch, torchvision and timm write the
        # PyTorch state dicts the PyTorch layouts are tested against (torch 2.13.0: the CPU build the index
        # serves; torchvision 0.28.0 is the release built for it).
        "test": ["pytest", "pytest-xdist", "scikit-learn", "nbclient", "nbformat", "ipykernel", "jax",
                 "tf-slim", "torch==2.13.0", "torchvision==0.28.0", "timm>=1.0,<2"],
    },
    entry_points={"console_scripts": ["kerasnets=kerasnets.cli:main"]},
)
