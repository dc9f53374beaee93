"""The champion as a scoring run loads it: the intake and batch scoring flows share it."""

from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.runtime import Runtime
from fraudloop.process import tune_for_scoring
from models.scoring import ScoringModel, load_model


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 5])
def champion(rt: Runtime) -> ScoringModel:
    """The champion, with this process tuned for scoring (`fraudloop.process`)."""
    s = rt.settings
    model = load_model(s.tracking_uri, s.model_name, "champion")
    tune_for_scoring()
    return model
