"""How a browser test file runs its tests: unittest, verbose, then one
line `<label>: N passed, M failed` for the Makefile's log, and exit 1
when anything failed or nothing ran."""

import sys
import unittest


def main(module, label):
    runner = unittest.TextTestRunner(verbosity=2, stream=sys.stdout)
    program = unittest.main(module=module, testRunner=runner, exit=False)
    r = program.result
    failed = len(r.failures) + len(r.errors) + len(r.unexpectedSuccesses)
    # Errors of setUpClass are not in testsRun.
    passed = max(0, r.testsRun - len(r.failures) - len(r.errors)
                 - len(r.skipped) - len(r.unexpectedSuccesses))
    if r.testsRun == 0 and failed == 0:
        failed = 1                              # nothing ran: a failure
    print("%s: %d passed, %d failed" % (label, passed, failed))
    sys.exit(0 if failed == 0 and r.wasSuccessful() else 1)
