"""The run parameters of the compiled pipelines and the config keys behind them, written once.

The pipeline signatures (pipelines/pipeline.py, pipelines/sweep.py), the override dicts of the component bodies,
`submit.py --param` and the table in docs/configuration.md all come from `PARAMETERS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAIN, SWEEP, SMOKE = "main", "sweep", "smoke"
PIPELINES = (MAIN, SWEEP, SMOKE)
SMOKE_STEPS = 50  # optimizer steps per mode of the smoke job: enough to see step times settle


@dataclass(frozen=True)
class RunParameter:
    name: str
    keys: tuple[str, ...]  # config keys the parameter sets (none: it is derived from several, as sweep_grid)
    kind: type
    pipelines: tuple[str, ...] = (MAIN, SWEEP)
    note: str = ""
    value: Any = None  # the default of a parameter that sets no config key

    def default(self, cfg) -> Any:
        """The parameter's default: the config's value of its key (sweep_grid: the expanded `sweep.*` grid)."""
        if self.name == "sweep_grid":
            return cfg.sweep.grid()
        if not self.keys:
            return self.value
        value: Any = cfg
        for part in self.keys[0].split("."):
            value = getattr(value, part)
        return list(value) if isinstance(value, list) else value


PARAMETERS: tuple[RunParameter, ...] = (
    RunParameter("data_uri", ("data.uri",), str, PIPELINES),
    RunParameter("data_seed", ("data.seed",), int, PIPELINES, note="seed of the split"),
    RunParameter("model_name", ("model.name",), str, PIPELINES),
    RunParameter("lora_r", ("lora.r",), int, (MAIN,)),
    RunParameter("lora_alpha", ("lora.alpha",), int, (MAIN,)),
    RunParameter("lora_target_modules", ("lora.target_modules",), list, (MAIN,)),
    RunParameter(
        "sweep_grid",
        (),
        list,
        (SWEEP,),
        note="`sweep.r`, `sweep.alpha_ratio`, `sweep.target_modules` expanded to `{r, alpha, target_modules}` "
        "items; each trial sets `lora.r`, `lora.alpha`, `lora.target_modules`",
    ),
    RunParameter("lora_learning_rate", ("train.lora_learning_rate",), float),
    RunParameter("baseline_learning_rate", ("train.baseline_learning_rate",), float),
    RunParameter("epochs", ("train.epochs",), int),
    RunParameter("batch_size", ("train.batch_size",), int),
    RunParameter("seed", ("train.seed",), int, PIPELINES, note="seed of initialisation, dropout and shuffling"),
    RunParameter("smoke_steps", (), int, (SMOKE,), note="optimizer steps per mode of the smoke job", value=SMOKE_STEPS),
)
BY_NAME: dict[str, RunParameter] = {p.name: p for p in PARAMETERS}
# Pipeline parameter -> the config keys it sets.
PARAMETER_KEYS: dict[str, tuple[str, ...]] = {p.name: p.keys for p in PARAMETERS}


def pipeline_parameters(pipeline: str) -> tuple[RunParameter, ...]:
    """The run parameters of one pipeline (`main`, `sweep` or `smoke`), in signature order."""
    if pipeline not in PIPELINES:
        raise ValueError(f"pipeline must be one of {PIPELINES}, got {pipeline!r}")
    return tuple(p for p in PARAMETERS if pipeline in p.pipelines)


def run_overrides(**values: Any) -> dict[str, Any]:
    """Config overrides (key -> value) for run-parameter values given by parameter name."""
    unknown = sorted(set(values) - set(BY_NAME))
    if unknown:
        raise ValueError(f"not run parameters: {', '.join(unknown)}")
    return {key: value for name, value in values.items() for key in BY_NAME[name].keys}


def parameters_reference() -> str:
    """Markdown table of the run parameters (docs/configuration.md)."""
    lines = ["| parameter | config key | pipelines |", "|---|---|---|"]
    for p in PARAMETERS:
        keys = ", ".join(f"`{k}`" for k in p.keys) or "-"
        note = f" ({p.note})" if p.note else ""
        lines.append(f"| `{p.name}` | {keys}{note} | {', '.join(p.pipelines)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(parameters_reference(), end="")
