# Device authentication: HMAC challenge-response state (per connection) and the provisioned secret.
from security.authenticator import Authenticator  # noqa: F401
from security.secret import SECRET_PATH, load_secret  # noqa: F401
