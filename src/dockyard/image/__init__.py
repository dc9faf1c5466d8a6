"""Images: references, layer application, configs and the image service."""
