from nimbus.common.service import run
from nimbus.invoker.main import main

run(main)
