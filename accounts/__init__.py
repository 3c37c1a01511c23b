"""User accounts: password logins, and stable opaque ids for header and OAuth logins.

The id of an account, never its login name, is the user id the agents see. `ensemble-admin`
(chainlit_app/admin.py) manages the accounts from a console. Nothing runs at import.
"""

from accounts.users import User, UserError, UserExists, UserStore

__all__ = ["User", "UserError", "UserExists", "UserStore"]
