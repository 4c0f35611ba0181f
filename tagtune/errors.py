"""The one error type for bad user input, in a leaf module (it imports nothing) that every
package of tagtune imports it from: ``from tagtune.errors import InputError``.

Every layer raises :class:`InputError` (or a subclass) for input a user can fix: a corrupt file,
a missing path, an unknown family, a bad range.  The CLI turns it into one line on stderr and
exit code 2; anything else is an internal error (exit code 1).
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input that the user can fix; the message names the file or flag and the fix."""
