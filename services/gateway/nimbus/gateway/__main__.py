from nimbus.common.service import run
from nimbus.gateway.main import main

run(main)
