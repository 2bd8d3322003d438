"""Every numeric option is range-checked before anything is built, and the error names the key."""

from __future__ import annotations

import pytest

from pr1 import schema


@pytest.mark.parametrize(
    "bad, match",
    [
        ("objective.num_generations=1", r"^objective.num_generations must be an integer >= 2, got 1$"),
        ("objective.num_generations=0", r"^objective.num_generations must be an integer >= 2, got 0$"),
        ("objective.num_generations=2.5", r"^objective.num_generations must be an integer >= 2, got 2.5$"),
        ("objective.adv_eps=0", r"^objective.adv_eps must be a number > 0, got 0$"),
        ("objective.beta=-1", r"^objective.beta must be a number >= 0, got -1$"),
        ("objective.epsilon=-0.2", r"^objective.epsilon must be a number > 0, got -0.2$"),
        ("objective.top_p=1.5", r"^objective.top_p must be a number in \(0, 1\], got 1.5$"),
        ("objective.top_p=0", r"^objective.top_p must be a number in \(0, 1\], got 0$"),
        ("objective.grad_accum=0", r"^objective.grad_accum must be an integer >= 1, got 0$"),
        ("print_every=0", r"^print_every must be an integer >= 1, got 0$"),
        ("resume=maybe", r"^resume must be true or false, got 'maybe'$"),
        ("objective.prompts_per_step=0", r"^objective.prompts_per_step must be an integer >= 1, got 0$"),
        ("objective.num_iterations=0", r"^objective.num_iterations must be an integer >= 1, got 0$"),
        ("objective.micro_batch_size=-1", r"^objective.micro_batch_size must be an integer >= 0, got -1$"),
        (
            "objective.lr_schedule=cosine_decay",
            r"^objective.lr_schedule must be one of \['linear', 'cosine'.*got 'cosine_decay'$",
        ),
        ("trainer.val_check_interval=0", r"^trainer.val_check_interval must be an integer >= 1, got 0$"),
        (
            "model.dtype=bogus",
            r"^model.dtype must be one of \['float32', 'bfloat16', 'float16'\], got 'bogus'$",
        ),
        ("model.path=/nonexistent", r"^model.path='/nonexistent': no such folder \(and not a hub id"),
        ("model.path=./ckpt/none", r"^model.path='./ckpt/none': no such folder"),
        ("model.path=a/b/c", r"^model.path='a/b/c': no such folder"),
    ],
)
def test_bad_value_is_refused_naming_the_key(compose, bad, match):
    with pytest.raises(ValueError, match=match):
        schema.validate(compose(bad))


def test_model_path_folder_needs_a_config(compose, tmp_path):
    with pytest.raises(ValueError, match=r"the folder has no config.json"):
        schema.validate(compose(f"model.path={tmp_path}"))
    schema.validate(
        compose("model=qwen2vl_2b")
    )  # a hub id is left to the loader (nothing is downloaded here)


def test_unknown_task_metric_is_refused_from_the_tasks_own_metrics(compose, grounding_records):
    """pr1.run checks task.metric this way after loading the data, before the model is built."""
    from pr1 import resolvers
    from pr1.run import check_task_metric
    from pr1.tasks import Task

    cfg = compose("task=grounding", "task.metric=bogus")
    task = Task.from_config(cfg.task, resolvers.run_options(cfg))
    with pytest.raises(ValueError, match=r"^task.metric must be one of \['acc50', 'miou'\] .*got 'bogus'$"):
        check_task_metric(task, list(grounding_records), "bogus")
    check_task_metric(task, list(grounding_records), "miou")
