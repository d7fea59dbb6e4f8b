"""The render script: its model, the YAML loader with line numbers, and checks of meaning."""
