import random, time, asyncio
from pathlib import Path
from core.settings import Settings
from agents.specialists.base import FileRef
from agents.specialists.data.tables import TableStore, check_table
from agents.specialists.data.sql import plan, validate
d=Path('/tmp/dd'); d.mkdir(exist_ok=True); (d/'uploads').mkdir(exist_ok=True)
p=d/'uploads'/'orders.csv'
rng=random.Random(1)
regions=['North','South','East','West']
with p.open('w') as f:
    f.write('order_id,region,order_value,quantity\n')
    for i in range(200000):
        f.write(f'{i},{rng.choice(regions)},{rng.randint(100,99999)/100},{rng.randint(1,9)}\n')
s=Settings(data_dir=d, _env_file=None)
ref=FileRef('f1','orders.csv',str(p),'text/csv',p.stat().st_size,'table')
t=time.perf_counter(); check_table(ref,s); print('check',time.perf_counter()-t)
st=TableStore(s)
t=time.perf_counter(); tables=st.load('alice','chat1',[ref]); print('load',time.perf_counter()-t)
print(tables[0].describe())
for qq in ['What is the average order value per region?','total quantity by region','how many rows are there?','max order value','list the orders from North']:
    pl=plan(qq,tables); print(qq,'->',pl)
    if pl: print(st.query(tables,pl.sql).rows[:5])
for bad in ["SELECT * FROM read_csv('/etc/passwd')","DROP TABLE orders","SELECT 1; SELECT 2","SELECT * FROM other","COPY orders TO '/tmp/x.csv'", "SELECT getenv('HOME')", "SELECT * FROM orders WHERE region IN (SELECT * FROM glob('/*'))"]:
    try: validate(bad,{'orders'}); print('PASSED?!',bad)
    except Exception as e: print('refused:',bad,'->',e)
try: st.query(tables, "SELECT count(*) FROM orders"); print('ok count')
except Exception as e: print(e)
# another user's ids
print('bob sees', st.load('bob','chat1',[]))
try: st.load('bob','chat1',[FileRef('x','p.csv',str(d/'uploads'/'..'/'..'/'etc'/'passwd'),'text/csv',1,'table')])
except Exception as e: print('dotdot:',e)
(d/'bad.csv').write_text('a,b\n1,2\n3,4,5\n')
try: check_table(FileRef('b','bad.csv',str(d/'bad.csv'),'text/csv',1,'table'),s)
except Exception as e: print('ragged:',e)
(d/'lat.csv').write_bytes('name,city\nJos\xe9,M\xe1laga\n'.encode('latin-1'))
try: check_table(FileRef('c','lat.csv',str(d/'lat.csv'),'text/csv',1,'table'),s)
except Exception as e: print('latin:',e)
from openpyxl import Workbook
wb=Workbook(); ws=wb.active; ws.append(['item','price','qty']); ws.append(['a',2,3]); ws.append(['b',5,'=B3*2']); wb.save(d/'f.xlsx')
try: check_table(FileRef('e','f.xlsx',str(d/'f.xlsx'),'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',1,'table'),s)
except Exception as e: print('xlsx:',e)
wb=Workbook(); ws=wb.active; ws.title='Prices'; ws.append(['item','price']); ws.append(['a',2]); ws.append(['b',5.5]); wb.save(d/'g.xlsx')
ref2=FileRef('g','g.xlsx',str(d/'g.xlsx'),'x',1,'table')
check_table(ref2,s); t2=st.load('alice','chat1',[ref,ref2]); print([x.describe() for x in t2]); print(st.query(t2, plan('average price',t2).sql))
