"""pr1's rule-based rewards, registered by config name with TRL's reward signature.

`REGISTRY[name](completions, solution=..., image_size=..., **options) -> list[float]`;
`build(name, **options)` binds options from `conf/reward/<name>.yaml`; `explain(...)` returns the
per-completion components to log.
"""

from pr1.rewards import counting, detection, format, iou, ocr  # noqa: F401  (importing registers them)
from pr1.rewards.registry import REGISTRY, build, explain

__all__ = ["REGISTRY", "build", "explain"]
