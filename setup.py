"""sgg_d2: scene graph generation on Detectron2."""

from setuptools import find_packages, setup

setup(
    name="sgg_d2",
    version="0.1.0",
    description="Scene graph generation (IMP, MOTIFS, VCTree, LinkNet, RelDN, F-Net, "
    "segmentation grounding) as a Detectron2 extension",
    packages=find_packages(exclude=("tests", "tests.*", "configs", "tools", "demo")),
    python_requires=">=3.9",
    # Detectron2 and torch are installed by tools/setup_env.sh (see README): they are not
    # declared here so that pip never replaces a user's own CUDA builds of them.
    install_requires=["numpy", "h5py", "pycocotools", "gensim", "networkx", "tqdm", "fvcore"],
)
