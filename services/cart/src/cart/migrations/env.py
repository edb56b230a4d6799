from ember_shared.migrations import run_env

from cart.models import Base

run_env(Base.metadata)
