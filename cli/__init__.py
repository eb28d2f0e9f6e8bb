"""The `wm` command line: thin click commands over the `watermark` and `attacks` libraries."""
