"""Training with Lightning: data preparation, the LightningModule, callbacks and the `train` entry point."""
