"""The prompt language (AUTOMATIC1111 semantics) and its encoding into what the guider consumes."""

from .encoder import PromptEncoder, apply_emphasis, build_chunks
from .prompt_parser import ParsedPrompt, PromptTerm, parse_prompt, parse_prompt_attention, prompt_schedules, split_and
from .types import CondTerm, Conditioning, Embedding

__all__ = ["PromptEncoder", "apply_emphasis", "build_chunks", "ParsedPrompt", "PromptTerm", "parse_prompt",
           "parse_prompt_attention", "prompt_schedules", "split_and", "CondTerm", "Conditioning", "Embedding"]
