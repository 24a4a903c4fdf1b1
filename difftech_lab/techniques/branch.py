"""Branching: re-run the steps from step k of a finished run with changed settings or prompt.

The parent's technique plans the child run (so an inpainting parent keeps its region, an img2img parent its
image), then the plan starts from the parent's stored state before step k. The recipe holds the parent's
recipe, so ``session.run`` re-runs the parent and branches again, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..errors import InvalidArgumentError
from ..recipe import Recipe, decode_value
from ..sampling.run import run_plan
from ..sampling.settings import BRANCHABLE, RUN_OPTIONS, RunOptions, split_options
from . import get_technique, register
from .base import Technique, TechniqueParams, new_recipe, replay


@register
class Branch(Technique):
    name = "branch"

    @dataclass
    class Params(TechniqueParams):
        parent: dict          # the parent run's recipe, as a dict
        step: int             # the first step the child runs
        overrides: dict = field(default_factory=dict)  # the parent technique's parameters the child changes

    def replay(self, session, recipe: Recipe, run: RunOptions):
        params = self.Params.from_dict(recipe.params)
        parent_recipe = Recipe.from_dict(params.parent)
        parent = replay(session, parent_recipe, RunOptions(keep_trajectory=True, progress=False))
        changed = {k: getattr(recipe.settings, k) for k in BRANCHABLE
                   if getattr(recipe.settings, k) != getattr(parent_recipe.settings, k)}
        options = {k: getattr(run, k) for k in RUN_OPTIONS}
        return branch(session, parent, params.step, **changed, **decode_value(params.overrides), **options)


def branch(session, result, step: int, **overrides):
    """Re-run the steps from ``step`` on, starting from the state stored in ``result``'s trajectory."""
    parent = result.recipe
    technique, parent_params = origin(parent)
    if parent.settings.sampler == "restart":
        raise InvalidArgumentError("a restart run's steps include its restart segments, so 'step k' is "
                                   "ambiguous; branch from a run of another sampler")
    if result.trajectory is None:
        raise InvalidArgumentError("this result has no trajectory; generate it with keep_trajectory=True "
                                   "to branch from a step")
    made = [event.i for event in result.trajectory]
    if isinstance(step, bool) or not isinstance(step, int) or step not in made:
        raise InvalidArgumentError(f"step {step!r} is not one this run made ({made[0]}..{made[-1]}); branch "
                                   "from one of those")
    own = {k: overrides.pop(k) for k in list(overrides) if k in technique.branchable}
    unknown = sorted(set(overrides) - set(BRANCHABLE) - set(RUN_OPTIONS))
    if unknown:
        raise InvalidArgumentError(f"cannot change {unknown} when branching a {parent.technique} run; change one "
                                   f"of {sorted({*BRANCHABLE, *technique.branchable})}")
    changes, run = split_options(overrides, technique="branch")
    settings = replace(parent.settings, **{k: getattr(changes, k) for k in overrides if k in BRANCHABLE})
    settings = technique.resolve(session, settings, parent_params)
    params = technique.check(session, settings, replace(parent_params, **own))
    plan = technique.plan(session, settings, params)
    plan.x = (result.x_init if step == made[0] else result.trajectory[made.index(step) - 1].x).clone()
    plan.start, plan.sigmas = step, result.sigmas
    recipe = new_recipe(session, Branch.name, settings, Branch.Params(parent.to_dict(), step, own).to_dict())
    child = run_plan(session, plan, recipe, run)
    if run.keep_trajectory:  # the parent's steps before the branch point, so the child can be scrubbed and branched
        child.trajectory = [event for event in result.trajectory if event.i < step] + child.trajectory
        child.x_init = result.x_init
    return child



def origin(recipe: Recipe):
    """The technique that planned ``recipe``'s run and its parameters, through any chain of branches."""
    if recipe.technique != Branch.name:
        technique = get_technique(recipe.technique)
        return technique, technique.Params.from_dict(recipe.params)
    technique, params = origin(Recipe.from_dict(recipe.params["parent"]))
    return technique, replace(params, **decode_value(recipe.params.get("overrides", {})))
