from nimbus.api.main import main
from nimbus.common.service import run

run(main)
