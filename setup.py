from setuptools import setup

setup(
    name="gpt2zh",
    version="0.1.0",
    description="Pretrain small GPT-2 models on Chinese prose and write long-form text with them",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=["gpt2zh", "gpt2zh.clean", "gpt2zh.configs", "gpt2zh.vocab_data", "gpt2zh.web"],
    # configs/ and vocab/ live at the top level of the repository; a wheel carries them inside the package.
    package_dir={"gpt2zh": "gpt2zh", "gpt2zh.configs": "configs", "gpt2zh.vocab_data": "vocab"},
    # the writing page is served from files inside the package: no CDN, no internet needed
    package_data={"gpt2zh.configs": ["*.json"], "gpt2zh.vocab_data": ["gb2312/*.json", "*.py"],
                  "gpt2zh.web": ["*.html", "*.css", "*.js"]},
    install_requires=[
        "torch>=2.3,<3",
        "transformers>=4.45",
        "tokenizers>=0.19",
        "accelerate>=0.34",
        "numpy>=1.24",
        "jieba>=0.42",
        "prefetch_generator>=1.0",
        "matplotlib>=3.7",
        "snownlp>=0.12",
        "opencc>=1.1",
        "tqdm>=4.60",
        "safetensors>=0.4",
        "fastapi>=0.110",
        "uvicorn>=0.29",
        "huggingface_hub>=0.23",   # models and vocabularies by Hub ID
        "livelossplot>=0.5",       # the live loss plot in a notebook (from 0.5 each series keeps its own steps)
    ],
    extras_require={"test": ["pytest>=7", "httpx>=0.27", "openai>=1.30", "selenium>=4.20", "psutil>=5.9",
                             "nbclient>=0.7", "nbformat>=5", "ipykernel>=6", "ipywidgets>=8"],
                    "notebook": ["ipykernel>=6", "ipywidgets>=8", "openai>=1.30"],
                    "tensorboard": ["tensorboard"]},
    entry_points={"console_scripts": ["gpt2zh = gpt2zh.cli:main"]},
)
