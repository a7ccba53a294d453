echo "pid 1 is our init; the job sees only its own processes:"
ps
hostname
