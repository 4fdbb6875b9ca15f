"""Python client of mlp-service (httpx; imports neither FastAPI nor SQLAlchemy nor the service).

```python
from mlp_client import Client

with Client("http://127.0.0.1:8000") as c:
    net = c.create_network(spec)
    data = c.upload_dataset("digits.csv", target="label")
    job = c.train(net, data, epochs=20, validation_split=0.2).wait()   # live progress bar
    print(job.history())
    print(job.model.predict(X[:5]))
```
"""

from mlp_client._common import Event, Retry
from mlp_client.aio import AsyncClient, AsyncDataset, AsyncJob, AsyncModel, AsyncNetwork, AsyncSweep
from mlp_client.client import Client, Dataset, Job, Model, Network, Sweep
from mlp_client.errors import (BadRequest, Conflict, ConnectionFailed, Forbidden, InvalidInput, JobFailed, MLPError,
                               NotFound, ServerError, ServiceUnavailable, SweepFailed, TooLarge, TooManyRequests,
                               Unauthorized, UnsupportedMediaType)

__all__ = [
    "Client", "AsyncClient", "Network", "Dataset", "Job", "Model", "Sweep", "AsyncNetwork", "AsyncDataset", "AsyncJob",
    "AsyncModel", "AsyncSweep", "Event", "Retry", "MLPError", "BadRequest", "Unauthorized", "Forbidden", "NotFound",
    "Conflict", "TooLarge", "UnsupportedMediaType", "InvalidInput", "TooManyRequests", "ServerError",
    "ServiceUnavailable", "ConnectionFailed", "JobFailed", "SweepFailed",
]
