"""Tasks: versioned train/test device splits (:mod:`.spec`) and how they are generated (:mod:`.generation`)."""

from latbench.tasks.spec import TaskSpec, clear_cache, list_tasks, load_task, load_task_file, select

__all__ = ["TaskSpec", "clear_cache", "load_task", "list_tasks", "load_task_file", "select"]
