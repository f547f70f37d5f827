#!/usr/bin/env python3
"""Why the queue's writer syncs a small group file by file: the time to make one
small record durable with syncfs (the whole file system) against fdatasync of
the file and fsync of its folder, on a quiet disk and while another program
writes 4 MB every 50 ms without syncing (a build, a ComfyUI saving images).
Prints medians and p95; writes only under /tmp/synctest, removed at the end."""
import os,time,statistics,ctypes,subprocess,sys
libc=ctypes.CDLL("libc.so.6",use_errno=True)
d="/tmp/synctest"; os.makedirs(d,exist_ok=True)
def one(mode):
    p=os.path.join(d,"rec.pending")
    fd=os.open(p,os.O_WRONLY|os.O_CREAT|os.O_TRUNC,0o600); os.write(fd,b'x'*3000)
    t=time.perf_counter()
    if mode=="syncfs":
        dfd=os.open(d,os.O_RDONLY); libc.syncfs(dfd); os.close(dfd)
    else:
        os.fdatasync(fd); dfd=os.open(d,os.O_RDONLY); os.fsync(dfd); os.close(dfd)
    dt=(time.perf_counter()-t)*1000; os.close(fd); return dt
def run(busy):
    bg=None
    if busy:
        # another program writing 4 MB every 50 ms without syncing (a build, images)
        bg=subprocess.Popen([sys.executable,"-c","""
import os,time
i=0
while True:
    with open('/tmp/synctest/noise%d'%(i%20),'wb') as f: f.write(os.urandom(4<<20))
    i+=1; time.sleep(0.05)
"""])
        time.sleep(1)
    res={}
    for mode in ("syncfs","each","syncfs","each"):
        ts=[one(mode) for _ in range(40)]
        res.setdefault(mode,[]).extend(ts)
        time.sleep(0.2)
    if bg: bg.kill()
    for m,ts in res.items():
        ts.sort(); print("%s busy=%s: median %.2f ms p95 %.2f ms"%(m,busy,statistics.median(ts),ts[int(len(ts)*0.95)]))
run(False); run(True)
import shutil
shutil.rmtree(d, ignore_errors=True)
