from . import test_outbox
from . import test_confirmation
from . import test_api
from . import test_screens
