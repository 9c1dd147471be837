"""``EngineDecoder`` and ``run_decoder_engine`` live in :mod:`promptseg.decoders.engine` (behind the Decoder
seam), ``Engine`` in :mod:`promptseg.encoders.engine`; this module keeps their old import path."""

from promptseg.decoders.engine import EngineDecoder, run_decoder_engine
from promptseg.encoders.engine import Engine

__all__ = ["Engine", "EngineDecoder", "run_decoder_engine"]
