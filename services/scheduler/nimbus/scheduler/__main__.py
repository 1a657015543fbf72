from nimbus.common.service import run
from nimbus.scheduler.main import main

run(main)
