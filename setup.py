"""MTQ-Net: non-intrusive speech quality assessment (S-MOS / N-MOS / G-MOS) for Hugging Face transformers."""

import re
from pathlib import Path

from setuptools import find_packages, setup

# The version's one home is modeling_mtqnet/__init__.py (`mtqnet --version` and `modeling_mtqnet.__version__`).
VERSION = re.search(r'^__version__ = "([^"]+)"', Path("modeling_mtqnet/__init__.py").read_text(), re.M).group(1)

setup(
    name="mtqnet",
    version=VERSION,
    description="MTQ-Net and multi-task pseudo-label learning for non-intrusive speech quality assessment",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["modeling_mtqnet", "modeling_mtqnet.*"]),
    # The evaluate metric module is a script loaded by path (offline), not an imported package; the model card
    # template is read by `mtqnet push`; pretrained/<name>/ are the shipped models (weights, configs, cards).
    package_data={"modeling_mtqnet": ["training/metrics/speech_quality/*.py", "sharing/*.md", "pretrained/*/*"]},
    # Ranges, not pins: GPU users bring their own torch build. The CPU test set-up pins exact versions
    # (requirements-cpu-test.txt) and installs torch==2.13.0 first. No torchaudio: it breaks transformers on CPU torch.
    install_requires=[
        "torch>=2.4",
        "transformers>=5.0,<6",
        "numpy>=1.24",
        "soundfile>=0.12",
        "soxr>=0.3",
        "safetensors>=0.4",
        "huggingface-hub>=1.0",
    ],
    extras_require={
        "train": ["datasets>=4.0", "accelerate>=1.0", "evaluate>=0.4", "scipy>=1.10", "tqdm>=4.60",
                  "matplotlib>=3.7"],  # + torchcodec matching your torch, for datasets Audio columns
        "corpus": ["noisereduce>=3.0", "pyrnnoise>=0.4", "scipy>=1.10"],  # scipy: the reverb and bandlimit distortions
        "onnx": ["onnx>=1.15", "onnxruntime>=1.16"],
        "intrusive": ["pesq>=0.0.4", "pystoi>=0.3", "scipy>=1.10"],  # PESQ / STOI / SDI labels (the teacher's)
        "dnsmos": ["speechmos>=0.0.1", "onnxruntime>=1.16", "librosa>=0.10"],
        # The demo (mtqnet demo): training, corpus systems, DNSMOS and pesq/pystoi for labels.
        # Its speech synthesiser, piper, goes into an environment of its own (scripts/setup_env.sh, .venv-tts).
        "demo": ["datasets>=4.0", "accelerate>=1.0", "evaluate>=0.4", "scipy>=1.10", "tqdm>=4.60", "matplotlib>=3.7",
                 "noisereduce>=3.0", "pyrnnoise>=0.4", "speechmos>=0.0.1", "onnxruntime>=1.16", "librosa>=0.10",
                 "pesq>=0.0.4", "pystoi>=0.3"],
        "app": ["gradio>=6.0", "matplotlib>=3.7"],  # mtqnet app
        "test": ["pytest>=8", "pytest-timeout>=2", "scipy>=1.10"],
        "dev": ["pytest>=8", "pytest-timeout>=2", "scipy>=1.10", "ruff"],
    },
    entry_points={
        "console_scripts": [
            "mtqnet=modeling_mtqnet.cli:main",
            # Aliases kept for scripts written before the one `mtqnet` command.
            "mtqnet-score=modeling_mtqnet.cli:score_alias",
            "mtqnet-annotate=modeling_mtqnet.cli:annotate_alias",
        ]
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Multimedia :: Sound/Audio :: Speech",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
