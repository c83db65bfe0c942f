"""The settings of `seqtasks serve`, each a flag (the CLI makes them from these fields). No FastAPI here."""
from __future__ import annotations

import dataclasses

from seqtasks.config import setting


@dataclasses.dataclass
class ServeSettings:
    host: str = setting("127.0.0.1", "address to listen on (0.0.0.0: every interface; only on a trusted network)")
    port: int = setting(8000, "TCP port", minimum=1, maximum=65535)
    batch_window_ms: float = setting(5.0, "how long the first waiting request waits for others to share its "
                                          "batch, in milliseconds (requests also wait while the model is busy)",
                                     minimum=0, maximum=1000)
    max_batch: int = setting(32, "most inputs run through the model together; 1 = no batching", minimum=1,
                             maximum=1024)
    max_inputs: int = setting(64, "most inputs (texts or images) in one request", minimum=1, maximum=10_000)
    max_text_chars: int = setting(4000, "longest text or prompt accepted, in characters", minimum=1,
                                  maximum=1_000_000)
    max_new_tokens: int = setting(512, "most tokens one request may ask to generate", minimum=1, maximum=100_000)
    max_beam: int = setting(8, "widest beam (and most outputs per input) a request may ask for", minimum=1,
                            maximum=64)
    max_request_bytes: int = setting(4_000_000, "largest request body accepted (an image is sent as base64 in it)",
                                     minimum=1024, maximum=1_000_000_000)
    shutdown_timeout: float = setting(30.0, "on SIGTERM, seconds to let requests in flight finish", minimum=0,
                                      maximum=3600)
