from nimbus.common.service import run
from nimbus.funcmgr.main import main

run(main)
