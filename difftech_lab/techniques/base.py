"""What every technique shares: parameters that serialise themselves, the plan → run → Result path, replay.

A technique subclasses :class:`Technique`, sets ``name`` and ``Params``, builds its :class:`Plan` in ``plan``
and is registered with ``@register``; its public function calls ``TECHNIQUE.call(session, params, options)``.
That is all the Session, the Recipe and ``session.run`` need to know about it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

from ..errors import InvalidArgumentError, ModelMismatchWarning, warn_user
from ..models.memory import check_memory
from ..patches import patched
from ..recipe import Recipe, decode_value, encode_value
from ..result import Result
from ..sampling.run import Plan, run_plan
from ..sampling.settings import RunOptions, Settings, split_options
from . import get_technique


@dataclass
class TechniqueParams:
    """Base of a technique's parameters: a dataclass whose fields may hold images, arrays and embeddings."""

    def to_dict(self) -> dict:
        return {f.name: encode_value(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "TechniqueParams":
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise InvalidArgumentError(f"{cls.__qualname__} has no parameters {unknown}; it has {names}")
        return cls(**{k: decode_value(v) for k, v in data.items()})


class Technique:
    """One technique on the seam. Subclasses set ``name`` and ``Params`` and implement ``plan``."""

    name: ClassVar[str] = ""
    Params: ClassVar[type] = TechniqueParams
    # the parameters a branch from one of this technique's runs may change (besides settings.BRANCHABLE)
    branchable: ClassVar[tuple[str, ...]] = ()

    def plan(self, session, settings: Settings, params) -> Plan:
        """The Plan of one run with resolved ``settings``."""
        raise NotImplementedError

    def resolve(self, session, settings: Settings, params) -> Settings:
        """The settings this run records: validated, with the model's defaults (a technique may fix some)."""
        return settings.resolved(session.model)

    def check(self, session, settings: Settings, params):
        """``params`` validated against the resolved settings (and normalised: what the recipe records)."""
        return params

    def execute(self, session, settings: Settings, params, run: RunOptions) -> Result:
        settings = self.resolve(session, settings, params)
        # before the plan allocates noise at that size: a CFG run has at least two network rows per image
        check_memory(session.model, settings.width, settings.height, 2 * settings.batch_size)
        params = self.check(session, settings, params)
        plan = self.plan(session, settings, params)
        return run_plan(session, plan, new_recipe(session, self.name, settings, params.to_dict()), run)

    def call(self, session, params, options: dict) -> Result:
        """The public call: ``options`` are the settings and run options (``SETTINGS_DOC``)."""
        settings, run = split_options(options, technique=self.name, own=tuple(f.name for f in fields(params)))
        return self.execute(session, settings, params, run)

    def replay(self, session, recipe: Recipe, run: RunOptions) -> Result:
        """Run ``recipe`` again (``session.run`` calls this with the recipe's patches entered)."""
        return self.execute(session, recipe.settings, self.Params.from_dict(recipe.params), run)


def replay(session, recipe: Recipe, run: RunOptions) -> Result:
    """Run ``recipe`` again, with the network patches that were active when it was made.

    Warns (ModelMismatchWarning) when the session's weights are not the ones the recipe was made with: it then
    runs, but cannot reproduce the result.
    """
    loaded = session.model.identity
    if recipe.model_hash and loaded != recipe.model_hash:
        warn_user(f"this recipe was made with model {recipe.model!r} (weights {recipe.model_hash}), but the "
                  f"session holds {session.model.name!r} (weights {loaded or 'unknown'}); the result will differ "
                  "from the recipe's", ModelMismatchWarning)
    with patched(session, *recipe.patches):
        return get_technique(recipe.technique).replay(session, recipe, run)


def new_recipe(session, technique: str, settings: Settings, params: dict) -> Recipe:
    """The Recipe of a run on ``session`` now: its model's name and weights hash, and the active patches."""
    return Recipe(technique=technique, settings=settings, params=params, model=session.model.name,
                  model_hash=session.model.identity, patches=[patch.to_dict() for patch in session.active_patches])
