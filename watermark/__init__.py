"""wm: watermark LLM text during generation, detect it with honest p-values, attack it."""

from .config import SchemeConfig, config_from_dict, load_config_file, save_config_file
from .corpus import detect_texts
from .errors import WmError
from .keys import Key, load_key_file, write_key_file
from .schemes import Detection, available_schemes, build_scheme

__version__ = "0.1.0"

__all__ = [
    "Detection",
    "Key",
    "SchemeConfig",
    "WmError",
    "available_schemes",
    "build_scheme",
    "config_from_dict",
    "detect_texts",
    "load_config_file",
    "load_key_file",
    "save_config_file",
    "write_key_file",
]
