from checkout.models import Base
from ember_shared.migrations import run_env

run_env(Base.metadata)
