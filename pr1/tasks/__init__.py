"""Tasks: one class per task kind on the shared base (`pr1.tasks.base.Task`), registered by its `kind`.

Importing this package registers every kind; `Task.from_config(cfg.task, RunOptions(...))` builds one.
"""

from pr1.tasks import counting, detection, grounding, mixture, ocr  # noqa: F401  (importing registers them)
from pr1.tasks.base import TASKS, RewardTerm, RunOptions, Task

__all__ = ["TASKS", "RewardTerm", "RunOptions", "Task"]
