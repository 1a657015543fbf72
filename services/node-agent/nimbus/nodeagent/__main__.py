from nimbus.common.service import run
from nimbus.nodeagent.main import main

run(main)
