"""gpt2zh: pretrain small GPT-2 models on Chinese prose and write long-form text with them."""

__version__ = "0.1.0"
