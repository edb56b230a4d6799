from ember_shared.migrations import run_env

from checkout.models import Base

run_env(Base.metadata)
