"""An example handler package, built into a worker image by examples/handler-image/Dockerfile."""
