"""Device identity for pm500 collectors: the plain functions behind `cli.py`.

Each module does one job: `outputs` reads the stack's outputs, `crypto` makes keys/CSRs and checks
certificates, `aws` builds the IoT client and words its errors, `bundle` writes bundle directories
atomically, `provision` issues/rotates one device with rollback, `lifecycle` lists and revokes,
`bulk` provisions many devices concurrently.
"""
