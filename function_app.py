"""Azure Functions entry point (Python v2 model): one timer, one call.

Importing this module must never read settings or touch the network: the host indexes functions by
importing it, and an import-time failure silently hides every function.
"""

import azure.functions as func

from nordpass_connector.composition import run_timer_tick

app = func.FunctionApp()


@app.timer_trigger(schedule="0 */1 * * * *", arg_name="timer", run_on_startup=False, use_monitor=True)
def nordpass_to_sentinel(timer: func.TimerRequest) -> None:
    run_timer_tick(past_due=timer.past_due)
