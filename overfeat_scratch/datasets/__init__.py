"""The data the networks see: MNIST read from its idx files, digit windows, the
synthetic digit scenes, and their COCO-format annotations."""
