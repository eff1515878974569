"""The dataset: sources (pinned, verified, safely read), the build into Hugging Face parquet configs, the store that reads it back."""
