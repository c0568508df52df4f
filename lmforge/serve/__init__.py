"""``lmforge serve``: an OpenAI-compatible HTTP server with continuous batching (see ``docs/serve.md``)."""

from lmforge.serve.app import DEFAULT_CHAT_TEMPLATE, Server, create_app
from lmforge.serve.scheduler import SamplingParams, Scheduler, Sequence

__all__ = ["DEFAULT_CHAT_TEMPLATE", "SamplingParams", "Scheduler", "Sequence", "Server", "create_app"]
